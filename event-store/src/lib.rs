//! Chronicle's event store on PostgreSQL.
//!
//! # Layout
//! - [`tenant_scope`]: [`TenantTransaction`], the only way to touch tenant rows: it sets
//!   the transaction-local tenant that row-level security checks.
//! - [`append`]: [`ExpectedVersion`], [`NewEvent`] and `append_to_stream`, optimistic
//!   concurrency in one statement per append.
//! - [`stream`]: reading one stream forward.
//! - [`global_log`]: reading every tenant's events in a commit-safe order, for the relay.
//! - [`replay_reads`]: what rebuilding and verifying projections read: a tenant's whole
//!   log, its (stream, version, position) index, the tenants with events, the settled horizon.
//! - [`migrations`]: the schema, embedded, run by the owner role.
//! - [`pool`]: how every process keeps its connections (checked only after sitting idle).
//! - [`error`]: [`EventStoreError`], what can go wrong, typed.
//! - `testing` (feature `testing`): a scratch database per test, and event fixtures.
//!
//! No Kafka here: the relay (crate `relay`) reads the global log through [`EventStore`].
//!
//! Invariants, each enforced where it is written down: events are immutable (grants and
//! triggers), tenants never see each other's rows (forced row-level security), and the
//! global log reader never skips an event whose transaction commits late.

pub mod append;
pub mod error;
pub mod global_log;
pub mod migrations;
pub mod pool;
pub mod replay_reads;
pub mod stream;
pub mod tenant_scope;
#[cfg(feature = "testing")]
pub mod testing;

use sqlx::PgPool;

pub use append::{AppendResult, ExpectedVersion, MAX_EVENT_BYTES, NewEvent};
pub use error::{EventStoreError, transience};
pub use global_log::{GlobalLogEvent, LogPosition, RawLogEvent};
pub use replay_reads::LoggedEvent;
pub use schemas::{EventEnvelope, EventMetadata, StreamId, TenantId};
pub use tenant_scope::TenantTransaction;

/// The event store over a pool of `chronicle_app` connections.
#[derive(Debug, Clone)]
pub struct EventStore {
    pool: PgPool,
}

impl EventStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a transaction scoped to `tenant`, for callers that append and write other
    /// rows (idempotency records, registries) atomically.
    pub async fn begin(
        &self,
        tenant: &TenantId,
    ) -> Result<TenantTransaction<'static>, EventStoreError> {
        TenantTransaction::begin(&self.pool, tenant).await
    }

    /// Appends `events` to `stream` if its version is `expected`: a transaction of its own,
    /// in one round trip.
    pub async fn append_to_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        append::append(&self.pool, tenant, stream, expected, events).await
    }

    /// Reads `stream` from `from_version` (inclusive), at most `max_events`, oldest first.
    pub async fn read_stream(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        from_version: u64,
        max_events: u32,
    ) -> Result<Vec<EventEnvelope>, EventStoreError> {
        let mut tx = self.begin(tenant).await?;
        let events = tx.read_stream(stream, from_version, max_events).await?;
        tx.commit().await?;
        Ok(events)
    }

    /// Reads up to `max_events` of every tenant's events after `after`, in commit-safe
    /// order. See [`global_log`].
    pub async fn read_global_log(
        &self,
        after: LogPosition,
        max_events: u32,
    ) -> Result<Vec<GlobalLogEvent>, EventStoreError> {
        global_log::read(&self.pool, after, max_events).await
    }

    /// Like [`EventStore::read_global_log`], payloads and metadata left as stored JSON
    /// text, for forwarding them unread.
    pub async fn read_global_log_raw(
        &self,
        after: LogPosition,
        max_events: u32,
    ) -> Result<Vec<RawLogEvent>, EventStoreError> {
        global_log::read_raw(&self.pool, after, max_events).await
    }

    /// Every tenant with events, and how many each has.
    pub async fn tenants_with_events(&self) -> Result<Vec<(TenantId, u64)>, EventStoreError> {
        replay_reads::tenants_with_events(&self.pool).await
    }

    /// A global log position behind every event that is not yet committed: reading the
    /// log from here later finds everything committed after this call.
    pub async fn settled_horizon(&self) -> Result<LogPosition, EventStoreError> {
        replay_reads::settled_horizon(&self.pool).await
    }
}
