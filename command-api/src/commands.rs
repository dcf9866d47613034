//! The one path every write takes, so each command handler says only what is its own.
//!
//! A write is: the tenant's write limit; one transaction scoped to the tenant; the
//! `Idempotency-Key` check first in it (a replay ends here); the stream loaded and folded;
//! the client's `If-Match` checked against its version; the aggregate's decision; the
//! events appended at exactly the version decided on (a concurrent writer makes it a 412,
//! never a lost update); the rows kept beside the events (registries, users) written;
//! the response recorded for replays; commit. Everything or nothing.
//!
//! A handler supplies a [`Command`]: which stream, what precondition, the decision, the
//! rows to keep, the response.

use std::future::Future;

use axum::response::{IntoResponse, Response};
use event_store::{
    EventStoreError, ExpectedVersion, NewEvent, StreamId, TenantId, TenantTransaction,
};
use schemas::{DomainEvent, EventEnvelope};

use crate::auth::Caller;
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::ApiError;
use crate::state::AppState;

/// State folded from a stream: pure, no business logic in [`Aggregate::apply`].
pub trait Aggregate: Sized + Send + Sync {
    type Event: DomainEvent + Send + Sync;

    /// The state after `event` (`None` before the stream's first event).
    fn apply(state: Option<Self>, event: &Self::Event) -> Option<Self>;

    /// Folds a stream as stored, through the upcasters.
    fn fold(envelopes: Vec<EventEnvelope>) -> Result<Option<Self>, ApiError> {
        let mut state = None;
        for envelope in envelopes {
            let event = Self::Event::decode(
                &envelope.event_type,
                envelope.schema_version,
                envelope.payload,
            )
            .map_err(ApiError::internal)?;
            state = Self::apply(state, &event);
        }
        Ok(state)
    }
}

/// What the client expects of the stream before the command decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: the aggregate decides (creating refuses an existing stream itself).
    None,
    /// The version the client read (`If-Match`); 412 when the stream moved on.
    Version(u64),
    /// The stream is new by construction (a fresh UUID v7): nothing to read first.
    NewStream,
}

/// Where a write landed, for the response and the rows kept beside the events.
#[derive(Debug)]
pub struct Landed<'a, A: Aggregate> {
    /// The stream's version after the write (unchanged when nothing was appended).
    pub version: u64,
    /// The events appended (none when the command changed nothing).
    pub events: &'a [A::Event],
    /// The state after the write.
    pub state: Option<&'a A>,
    /// Who wrote, for events a command appends to other streams in [`Command::record`].
    pub caller: &'a Caller,
}

/// One command: what a handler says about its write.
pub trait Command: Send {
    type Aggregate: Aggregate;

    /// The stream written.
    fn stream(&self) -> StreamId;

    fn precondition(&self) -> Precondition {
        Precondition::None
    }

    /// The events the command causes in `state`; none when it changes nothing.
    fn decide(
        &mut self,
        state: Option<&Self::Aggregate>,
    ) -> Result<Vec<<Self::Aggregate as Aggregate>::Event>, ApiError>;

    /// Rows kept beside the events (a registry, the users table), in the same transaction.
    fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, Self::Aggregate>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        let _ = (tx, landed);
        async { Ok(()) }
    }

    /// The response, recorded with the key for idempotent replays.
    fn respond(&self, landed: &Landed<'_, Self::Aggregate>) -> Result<StoredResponse, ApiError>;
}

/// Runs `command` as `caller` in `tenant`'s scope (the target tenant for platform writes).
pub async fn execute<C: Command>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    idempotency: Idempotency,
    mut command: C,
) -> Result<Response, ApiError> {
    if let Scope::Tenant(writer) = idempotency.scope() {
        app.limits.write(writer.as_str())?;
    }
    let mut tx = app.store.begin(tenant).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let stream = command.stream();
    let precondition = command.precondition();
    let (state, version) = if precondition == Precondition::NewStream {
        (None, 0)
    } else {
        let stored = tx.read_stream(&stream, 1, u32::MAX).await?;
        let version = stored.last().map_or(0, |e| e.stream_version);
        (C::Aggregate::fold(stored)?, version)
    };
    if let Precondition::Version(expected) = precondition {
        // Nothing there (or another tenant's, which row-level security hides): 404 before
        // any version talk, exactly as if it did not exist.
        if version == 0 {
            return Err(ApiError::NotFound);
        }
        if expected != version {
            return Err(ApiError::PreconditionFailed { current: version });
        }
    }

    let events = command.decide(state.as_ref())?;
    let version = append(&mut tx, &stream, version, precondition, &events, caller).await?;
    let state = events.iter().fold(state, C::Aggregate::apply);
    let landed = Landed {
        version,
        events: &events,
        state: state.as_ref(),
        caller,
    };
    command.record(&mut tx, &landed).await?;
    let response = command.respond(&landed)?;
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    Ok(response.into_response())
}

/// Appends `events` at exactly `version`; returns the new version (`version` itself when
/// there is nothing to append).
async fn append<E: DomainEvent>(
    tx: &mut TenantTransaction<'_>,
    stream: &StreamId,
    version: u64,
    precondition: Precondition,
    events: &[E],
    caller: &Caller,
) -> Result<u64, ApiError> {
    if events.is_empty() {
        return Ok(version);
    }
    let new_events = events
        .iter()
        .map(|event| NewEvent::new(event, caller.event_metadata()))
        .collect();
    match tx
        .append_to_stream(stream, ExpectedVersion::Exact(version), new_events)
        .await
    {
        Ok(appended) => Ok(appended.next_expected_version),
        // Another request changed the stream since it was read here: the client's version
        // is stale (412), or, for a command that named no version, the other one won (409).
        Err(EventStoreError::Concurrency { actual, .. }) => Err(match precondition {
            Precondition::Version(_) => ApiError::PreconditionFailed { current: actual },
            Precondition::None | Precondition::NewStream => ApiError::Conflict(
                "another request changed this at the same time; retry".to_owned(),
            ),
        }),
        Err(error) => Err(error.into()),
    }
}
