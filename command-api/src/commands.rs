//! The one path every write takes, so each command handler says only what is its own.
//!
//! A write is: the tenant's write limit; one transaction scoped to the tenant; the
//! `Idempotency-Key` check first in it (a replay ends here); the stream loaded and folded;
//! the client's `If-Match` checked against its version; the facts the decision needs
//! beyond the stream read in the same transaction (rows they come from stay locked until
//! commit, so the decision still holds when its events land); the aggregate's decision; the
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

    /// Whether [`Command::record`] writes rows beside the events. A command that does not,
    /// on a new stream and without an `Idempotency-Key`, is its append alone: one round
    /// trip, no transaction to open and commit around it. A command that reads facts
    /// ([`Command::read_facts`]) needs that transaction too, and says so here.
    const KEEPS_ROWS: bool = false;

    /// The stream written.
    fn stream(&self) -> StreamId;

    fn precondition(&self) -> Precondition {
        Precondition::None
    }

    /// What the decision needs beyond the stream (a role's current permissions, whether
    /// the tenant keeps another admin), read in the command's transaction after the
    /// stream is folded and kept for [`Command::decide`]. Never from an instance's
    /// in-memory copy: another instance may have changed it within the last second.
    fn read_facts(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        state: Option<&Self::Aggregate>,
        caller: &Caller,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        let _ = (tx, state, caller);
        async { Ok(()) }
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
    if !idempotency.has_key() && command.precondition() == Precondition::NewStream && !C::KEEPS_ROWS
    {
        return append_alone(app, caller, tenant, command).await;
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

    command.read_facts(&mut tx, state.as_ref(), caller).await?;
    let events = command.decide(state.as_ref())?;
    let version = if events.is_empty() {
        version
    } else {
        let appended = tx
            .append_to_stream(
                &stream,
                ExpectedVersion::Exact(version),
                new_events(&events, caller),
            )
            .await;
        landed_version(appended, precondition)?
    };
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

/// A command on a new stream that keeps no rows and has no key to record: the append is
/// the whole write, a transaction of its own.
async fn append_alone<C: Command>(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    mut command: C,
) -> Result<Response, ApiError> {
    let events = command.decide(None)?;
    let version = if events.is_empty() {
        0
    } else {
        let appended = app
            .store
            .append_to_stream(
                tenant,
                &command.stream(),
                ExpectedVersion::NoStream,
                new_events(&events, caller),
            )
            .await;
        landed_version(appended, Precondition::NewStream)?
    };
    let state = events.iter().fold(None, C::Aggregate::apply);
    let landed = Landed {
        version,
        events: &events,
        state: state.as_ref(),
        caller,
    };
    Ok(command.respond(&landed)?.into_response())
}

fn new_events<E: DomainEvent>(events: &[E], caller: &Caller) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| NewEvent::new(event, caller.event_metadata()))
        .collect()
}

/// The stream's version after an append, or why there is none.
fn landed_version(
    appended: Result<event_store::AppendResult, EventStoreError>,
    precondition: Precondition,
) -> Result<u64, ApiError> {
    match appended {
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
