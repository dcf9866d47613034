//! The projections: each one module implementing [`Projection`], listed once in
//! [`registry`]. The consumers, the CLI, health, replay, verification, rollback and tenant
//! repair all go through the trait and the registry and never name a projection.
//! - [`customers`]: the PostgreSQL read model `customer_views`.
//! - [`search`]: customer search in Elasticsearch.
//! - [`history`]: each customer's change history in Elasticsearch.
//! - [`audit`]: every event of every tenant in Elasticsearch.
//! - [`streams`]: the write paths they share.
//!
//! A projection gets a batch of decoded records and either writes all it can (returning
//! the records it could not use, which go to the dead-letter topic) or fails as a whole
//! on a transient error (database or Elasticsearch away), in which case the batch is
//! retried and no offset moves. Every write is idempotent and never regresses: version
//! guards in PostgreSQL, external versions in Elasticsearch.
//!
//! Adding a projection: a module here implementing [`Projection`] (what it is, how it
//! applies a batch, how it is rebuilt, verified and forgets a subject), its `mod` line, and
//! one line in [`registry::ALL`].

pub mod audit;
pub mod customers;
pub mod history;
pub mod registry;
pub mod search;
pub mod streams;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use event_store::{EventStore, TenantId};
use futures_util::future::BoxFuture;
use rdkafka::message::OwnedMessage;
use schemas::{AggregateType, EventEnvelope, StreamId};

use crate::replay::build::{BuildTarget, DynBuild};
use read_model::indices::IndexKind;
use read_model::{Es, EsError};

pub use streams::{
    Touched, TouchedStreams, index_touched_streams, index_with_versions, read_streams,
};

/// A projection, as the registry hands it out.
pub type ProjectionRef = &'static dyn DynProjection;

/// One projection: its own consumer group, metrics, layout, writes, rebuild, verification
/// and forgetting, written as one module with plain `async fn`s. Callers hold it as a
/// [`DynProjection`] (implemented once for every `Projection`), through [`registry::ALL`].
/// Everything generic (consuming, dead letters, replay's generations and swaps,
/// verification's comparison) is done by the callers through these methods.
pub trait Projection: Send + Sync + Debug + 'static {
    /// Its name, the aggregate types it reads, where it lives, what verification compares.
    const ABOUT: About;

    /// Projects a batch of events (from Kafka records, or from the event store when a
    /// replay catches up) into [`Sinks::targets`]'s target for it.
    fn apply(
        &self,
        sinks: &Sinks,
        batch: &[EventEnvelope],
    ) -> impl Future<Output = Result<Rejected, ProjectionError>> + Send;

    /// Everything it holds for `tenant` in its live target, as [`Held`] entries, for
    /// verification against the store.
    fn held(
        &self,
        sinks: &Sinks,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Vec<Held>, ProjectionError>> + Send;

    /// Its builder for a rebuild into `target` (a new generation, or the live target for
    /// one tenant in place).
    fn builder(&self, target: BuildTarget) -> Box<dyn DynBuild>;

    /// Forgets one subject of a tenant (a stream: a customer, a user): its rows and
    /// documents are deleted or, where the fact must stay (the audit log), redacted.
    /// Returns how many rows or documents changed. Erasure builds on this.
    fn forget(
        &self,
        sinks: &Sinks,
        tenant: &TenantId,
        subject: &StreamId,
    ) -> impl Future<Output = Result<u64, ProjectionError>> + Send;
}

/// What a projection is, as data.
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// The consumer group's suffix, the metrics label, the CLI's word.
    pub name: &'static str,
    /// The aggregate types whose topics it reads (names from [`schemas::AGGREGATE_TYPES`]).
    pub aggregates: &'static [&'static str],
    /// Where its documents live.
    pub storage: Storage,
    /// What verification compares with the store.
    pub shape: Shape,
}

impl About {
    pub const fn new(
        name: &'static str,
        aggregates: &'static [&'static str],
        storage: Storage,
        shape: Shape,
    ) -> Self {
        Self {
            name,
            aggregates,
            storage,
            shape,
        }
    }
}

/// A [`Projection`] behind a pointer: what the registry lists and every caller uses.
pub trait DynProjection: Send + Sync + Debug {
    fn about(&self) -> About;

    fn apply<'a>(
        &'a self,
        sinks: &'a Sinks,
        batch: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<Rejected, ProjectionError>>;

    fn held<'a>(
        &'a self,
        sinks: &'a Sinks,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<Vec<Held>, ProjectionError>>;

    fn builder(&self, target: BuildTarget) -> Box<dyn DynBuild>;

    fn forget<'a>(
        &'a self,
        sinks: &'a Sinks,
        tenant: &'a TenantId,
        subject: &'a StreamId,
    ) -> BoxFuture<'a, Result<u64, ProjectionError>>;

    fn name(&self) -> &'static str {
        self.about().name
    }

    fn aggregates(&self) -> &'static [&'static str] {
        self.about().aggregates
    }

    fn storage(&self) -> Storage {
        self.about().storage
    }

    fn shape(&self) -> Shape {
        self.about().shape
    }

    /// Whether this projection can use `envelope`: its aggregate is one the projection
    /// reads and its payload decodes (through the upcasters) into a known event type.
    /// Anything else is poison for it, with the reason.
    fn check(&self, envelope: &EventEnvelope) -> Result<(), String> {
        let category = envelope.stream_id.category();
        if !self.aggregates().contains(&category) {
            return Err(format!("{category} events do not belong on this topic"));
        }
        let aggregate = AggregateType::named(category)
            .ok_or_else(|| format!("unknown aggregate `{category}`"))?;
        aggregate
            .decodes(
                &envelope.event_type,
                envelope.schema_version,
                envelope.payload.clone(),
            )
            .map_err(|error| error.to_string())
    }

    /// The index it lives in (none for a PostgreSQL table).
    fn index_kind(&self) -> Option<IndexKind> {
        match self.storage() {
            Storage::Table(_) => None,
            Storage::Index(kind) => Some(kind),
        }
    }

    /// The name readers reach it by: the table, or the index alias.
    fn live_target(&self, index_prefix: &str) -> String {
        match self.storage() {
            Storage::Table(table) => table.to_owned(),
            Storage::Index(kind) => kind.alias(index_prefix),
        }
    }
}

impl<P: Projection> DynProjection for P {
    fn about(&self) -> About {
        P::ABOUT
    }

    fn apply<'a>(
        &'a self,
        sinks: &'a Sinks,
        batch: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<Rejected, ProjectionError>> {
        Box::pin(Projection::apply(self, sinks, batch))
    }

    fn held<'a>(
        &'a self,
        sinks: &'a Sinks,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<Vec<Held>, ProjectionError>> {
        Box::pin(Projection::held(self, sinks, tenant))
    }

    fn builder(&self, target: BuildTarget) -> Box<dyn DynBuild> {
        Projection::builder(self, target)
    }

    fn forget<'a>(
        &'a self,
        sinks: &'a Sinks,
        tenant: &'a TenantId,
        subject: &'a StreamId,
    ) -> BoxFuture<'a, Result<u64, ProjectionError>> {
        Box::pin(Projection::forget(self, sinks, tenant, subject))
    }
}

// Projections are singletons known by name: equal, ordered and hashed by it.
impl PartialEq for dyn DynProjection {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for dyn DynProjection {}

impl PartialOrd for dyn DynProjection {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn DynProjection {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl Hash for dyn DynProjection {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

/// Where a projection's documents live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A PostgreSQL table (its live name; a rebuild builds `<name>_<generation>`).
    Table(&'static str),
    /// An Elasticsearch index of this kind, behind its alias.
    Index(IndexKind),
}

/// What a projection keeps, for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One entry per stream, at its latest version.
    LatestPerStream,
    /// One entry per event.
    EveryEvent,
}

/// One entry a projection holds: (stream, version, global position).
pub type Held = (String, u64, u64);

/// Decodes a record for `projection`, or says why it is poison for it. A reference record
/// (an event too large for Kafka, `ce_dataref`) decodes without its payload, which
/// [`complete`] then reads from the store.
pub fn decode(projection: ProjectionRef, message: &OwnedMessage) -> Result<Incoming, String> {
    use rdkafka::message::{Headers, Message};
    let payload = message
        .payload()
        .ok_or_else(|| "the record has no value".to_owned())?;
    let envelope: EventEnvelope =
        serde_json::from_slice(payload).map_err(|e| format!("not an event envelope: {e}"))?;
    let reference = message
        .headers()
        .is_some_and(|headers| headers.iter().any(|h| h.key == kafka_wire::DATAREF));
    if !reference {
        projection.check(&envelope)?;
    }
    Ok(Incoming {
        message: message.clone(),
        envelope,
        reference,
    })
}

/// Reads the payloads of reference records from the store, then checks them as
/// [`decode`] checks the others; returns the indices of those that are poison, with why.
/// Safe to call again after an error: what was read stays read.
pub async fn complete(
    projection: ProjectionRef,
    store: &EventStore,
    incoming: &mut [Incoming],
) -> Result<Rejected, ProjectionError> {
    let mut rejected = Vec::new();
    for (index, record) in incoming.iter_mut().enumerate() {
        if !record.reference {
            continue;
        }
        if record.envelope.payload.is_null() {
            let envelope = &record.envelope;
            let stored = store
                .read_stream(
                    &envelope.tenant_id,
                    &envelope.stream_id,
                    envelope.stream_version,
                    1,
                )
                .await?;
            match stored.into_iter().next() {
                Some(event) if event.event_id == envelope.event_id => record.envelope = event,
                _ => {
                    rejected.push((index, "the referenced event is not in the store".to_owned()));
                    continue;
                }
            }
        }
        if let Err(reason) = projection.check(&record.envelope) {
            rejected.push((index, reason));
        }
    }
    Ok(rejected)
}

/// A record with its decoded envelope.
#[derive(Debug)]
pub struct Incoming {
    pub message: OwnedMessage,
    pub envelope: EventEnvelope,
    /// A reference record: its payload is read from the store ([`complete`]).
    pub reference: bool,
}

/// What a projection could not use, by index into the batch, with the reason.
pub type Rejected = Vec<(usize, String)>;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] event_store::EventStoreError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] EsError),
}

/// What the projections share.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub store: EventStore,
    pub es: Es,
    pub index_prefix: String,
    pub targets: Targets,
    /// When search was last refreshed on purpose, across the batches of this projector.
    pub search_refreshed: Arc<RefreshClock>,
}

/// When an index was last made searchable on purpose. A projection that refreshes only
/// small batches (the live tail) would leave a catch-up, however short, to the index's
/// periodic refresh (a second); with the clock it still refreshes a few times a second.
#[derive(Debug, Default)]
pub struct RefreshClock {
    last: Mutex<Option<Instant>>,
}

impl RefreshClock {
    /// True, and the clock restarted, when the last refresh is more than `every` ago (or
    /// there was none).
    pub fn due(&self, every: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Notes a refresh made for another reason (a small batch).
    pub fn restart(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}

impl Sinks {
    /// Sinks writing where readers read: the aliases and the live tables.
    pub fn live(store: EventStore, es: Es, index_prefix: &str) -> Self {
        Self {
            store,
            es,
            index_prefix: index_prefix.to_owned(),
            targets: Targets::live(index_prefix),
            search_refreshed: Arc::default(),
        }
    }
}

/// Where each projection writes. Normally the aliases and the live tables; a replay points
/// one of them at the index or table it is building, to catch it up before the swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    names: BTreeMap<&'static str, String>,
}

impl Targets {
    pub fn live(index_prefix: &str) -> Self {
        Self {
            names: registry::ALL
                .iter()
                .map(|projection| (projection.name(), projection.live_target(index_prefix)))
                .collect(),
        }
    }

    /// The table or index `projection` writes into.
    pub fn of(&self, projection: &dyn DynProjection) -> &str {
        &self.names[projection.name()]
    }

    /// Points `projection` at another table or index (one a replay is building).
    pub fn set(&mut self, projection: &dyn DynProjection, target: impl Into<String>) {
        self.names.insert(projection.name(), target.into());
    }
}
