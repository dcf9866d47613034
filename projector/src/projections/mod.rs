//! The four projections, each its own consumer group:
//! - [`customers`]: the PostgreSQL read model `customer_views`.
//! - [`search`]: customer search in Elasticsearch.
//! - [`history`]: each customer's change history in Elasticsearch.
//! - [`audit`]: every event of every tenant in Elasticsearch.
//!
//! A projection gets a batch of decoded records and either writes all it can (returning
//! the records it could not use, which go to the dead-letter topic) or fails as a whole
//! on a transient error (database or Elasticsearch away), in which case the batch is
//! retried and no offset moves. Every write is idempotent and never regresses: version
//! guards in PostgreSQL, external versions in Elasticsearch.

pub mod audit;
pub mod customers;
pub mod history;
pub mod search;

use std::collections::BTreeMap;

use event_store::{EventStore, TenantId, TenantTransaction};
use rdkafka::message::OwnedMessage;
use schemas::{CustomerEvent, DecodeError, DomainEvent, EventEnvelope, StreamId};
use serde_json::Value;

use read_model::indices::IndexKind;
use read_model::{Es, EsError};

/// Which projection: the one registry the consumers, the CLI, replay and verification all
/// go through. Names its consumer group, its metrics and where its documents live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    Customers,
    Search,
    History,
    Audit,
}

impl Projection {
    pub const ALL: [Self; 4] = [Self::Customers, Self::Search, Self::History, Self::Audit];

    pub fn name(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Search => "search",
            Self::History => "history",
            Self::Audit => "audit",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The aggregates whose topics it reads.
    pub fn aggregates(self) -> &'static [&'static str] {
        match self {
            Self::Audit => &relay::topics::AGGREGATES,
            Self::Customers | Self::Search | Self::History => &[CustomerEvent::AGGREGATE],
        }
    }

    /// Where its documents live.
    pub fn storage(self) -> Storage {
        match self {
            Self::Customers => Storage::Table,
            Self::Search => Storage::Index(IndexKind::Customers),
            Self::History => Storage::Index(IndexKind::History),
            Self::Audit => Storage::Index(IndexKind::Audit),
        }
    }

    /// The index it lives in (none for the PostgreSQL read model).
    pub fn index_kind(self) -> Option<IndexKind> {
        match self.storage() {
            Storage::Table => None,
            Storage::Index(kind) => Some(kind),
        }
    }

    /// The name readers reach it by: the table, or the index alias.
    pub fn live_target(self, index_prefix: &str) -> String {
        match self.storage() {
            Storage::Table => read_model::customers::TABLE.to_owned(),
            Storage::Index(kind) => kind.alias(index_prefix),
        }
    }
}

/// Where a projection's documents live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The PostgreSQL read model (`customer_views`).
    Table,
    /// An Elasticsearch index of this kind, behind its alias.
    Index(IndexKind),
}

impl Projection {
    /// Whether this projection can use `envelope`: its aggregate is one the projection
    /// reads and its payload decodes (through the upcasters) into a known event type.
    /// Anything else is poison for it, with the reason.
    pub fn check(self, envelope: &EventEnvelope) -> Result<(), String> {
        let category = envelope.stream_id.category();
        if !self.aggregates().contains(&category) {
            return Err(format!("{category} events do not belong on this topic"));
        }
        let payload = envelope.payload.clone();
        let decoded = match category {
            "customer" => {
                CustomerEvent::decode(&envelope.event_type, envelope.schema_version, payload)
                    .map(|_| ())
            }
            "tenant" => {
                schemas::TenantEvent::decode(&envelope.event_type, envelope.schema_version, payload)
                    .map(|_| ())
            }
            "user" => {
                schemas::UserEvent::decode(&envelope.event_type, envelope.schema_version, payload)
                    .map(|_| ())
            }
            other => return Err(format!("unknown aggregate `{other}`")),
        };
        decoded.map_err(|error| error.to_string())
    }
}

/// Decodes a record for `projection`, or says why it is poison for it. A reference record
/// (an event too large for Kafka, `ce_dataref`) decodes without its payload, which
/// [`complete`] then reads from the store.
pub fn decode(projection: Projection, message: &OwnedMessage) -> Result<Incoming, String> {
    use rdkafka::message::{Headers, Message};
    let payload = message
        .payload()
        .ok_or_else(|| "the record has no value".to_owned())?;
    let envelope: EventEnvelope =
        serde_json::from_slice(payload).map_err(|e| format!("not an event envelope: {e}"))?;
    let reference = message
        .headers()
        .is_some_and(|headers| headers.iter().any(|h| h.key == relay::cloudevents::DATAREF));
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
    projection: Projection,
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

/// Runs `projection` over a batch of events (from Kafka records, or from the event store
/// when a replay catches up).
pub async fn apply(
    projection: Projection,
    sinks: &Sinks,
    batch: &[EventEnvelope],
) -> Result<Rejected, ProjectionError> {
    match projection {
        Projection::Customers => customers::apply(sinks, batch).await,
        Projection::Search => search::apply(sinks, batch).await,
        Projection::History => history::apply(sinks, batch).await,
        Projection::Audit => audit::apply(sinks, batch).await,
    }
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
}

impl Sinks {
    /// Sinks writing where readers read: the aliases and `customer_views`.
    pub fn live(store: EventStore, es: Es, index_prefix: &str) -> Self {
        Self {
            store,
            es,
            index_prefix: index_prefix.to_owned(),
            targets: Targets::live(index_prefix),
        }
    }
}

/// Where each projection writes. Normally the aliases and the live table; a replay points
/// one of them at the index or table it is building, to catch it up before the swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    names: BTreeMap<Projection, String>,
}

impl Targets {
    pub fn live(index_prefix: &str) -> Self {
        Self {
            names: Projection::ALL
                .into_iter()
                .map(|projection| (projection, projection.live_target(index_prefix)))
                .collect(),
        }
    }

    /// The table or index `projection` writes into.
    pub fn of(&self, projection: Projection) -> &str {
        &self.names[&projection]
    }

    /// Points `projection` at another table or index (one a replay is building).
    pub fn set(&mut self, projection: Projection, target: impl Into<String>) {
        self.names.insert(projection, target.into());
    }
}

/// The customer streams a batch touches, per tenant, with the batch indices of their
/// records (for rejecting them) and the lowest version seen.
#[derive(Debug, Default)]
pub struct TouchedStreams {
    pub by_tenant: BTreeMap<TenantId, BTreeMap<StreamId, Touched>>,
}

#[derive(Debug, Default)]
pub struct Touched {
    pub records: Vec<usize>,
    pub lowest_version: u64,
}

impl TouchedStreams {
    pub fn of(batch: &[EventEnvelope]) -> Self {
        let mut touched = Self::default();
        for (index, envelope) in batch.iter().enumerate() {
            if envelope.stream_id.category() != CustomerEvent::AGGREGATE {
                continue;
            }
            let entry = touched
                .by_tenant
                .entry(envelope.tenant_id.clone())
                .or_default()
                .entry(envelope.stream_id.clone())
                .or_insert(Touched {
                    records: Vec::new(),
                    lowest_version: u64::MAX,
                });
            entry.records.push(index);
            entry.lowest_version = entry.lowest_version.min(envelope.stream_version);
        }
        touched
    }
}

impl Touched {
    /// Every record that touched `stream`, rejected: the stream does not decode.
    pub fn rejected(&self, stream: &StreamId, error: &DecodeError) -> Rejected {
        let reason = format!("stream {stream} cannot be decoded: {error}");
        self.records
            .iter()
            .map(|record| (*record, reason.clone()))
            .collect()
    }
}

/// The shape the Elasticsearch customer projections share: each stream the batch touches is
/// read whole (one transaction per tenant) and turned into bulk `(action, document)` pairs
/// by `entries_of`; a stream that does not decode rejects the records that touched it.
/// Then one versioned bulk write.
pub async fn index_touched_streams(
    sinks: &Sinks,
    batch: &[EventEnvelope],
    refresh: bool,
    mut entries_of: impl FnMut(
        &TenantId,
        &StreamId,
        &Touched,
        &[EventEnvelope],
    ) -> Result<Vec<(Value, Value)>, DecodeError>,
) -> Result<Rejected, ProjectionError> {
    let mut rejected = Vec::new();
    let mut entries = Vec::new();
    for (tenant, streams) in TouchedStreams::of(batch).by_tenant {
        let mut tx = sinks.store.begin(&tenant).await?;
        let mut envelopes = read_streams(&mut tx, &streams).await?;
        tx.commit().await?;
        for (stream, touched) in &streams {
            let events = envelopes.remove(stream).unwrap_or_default();
            match entries_of(&tenant, stream, touched, &events) {
                Ok(pairs) => entries.extend(
                    pairs
                        .into_iter()
                        .map(|(action, document)| (touched.records.clone(), action, document)),
                ),
                Err(error) => rejected.extend(touched.rejected(stream, &error)),
            }
        }
    }
    rejected.extend(index_with_versions(&sinks.es, entries, refresh).await?);
    Ok(rejected)
}

/// Reads the touched streams of one tenant from the event store, whole, grouped by stream.
pub async fn read_streams(
    tx: &mut TenantTransaction<'_>,
    streams: &BTreeMap<StreamId, Touched>,
) -> Result<BTreeMap<StreamId, Vec<EventEnvelope>>, ProjectionError> {
    let ids: Vec<StreamId> = streams.keys().cloned().collect();
    let mut grouped: BTreeMap<StreamId, Vec<EventEnvelope>> = BTreeMap::new();
    for envelope in tx.read_streams(&ids).await? {
        grouped
            .entry(envelope.stream_id.clone())
            .or_default()
            .push(envelope);
    }
    Ok(grouped)
}

/// Bulk-indexes `(records, action, document)` entries with external versions. A version
/// conflict means Elasticsearch already has this or a newer version: done. Any other
/// item error rejects the records the document was built from. `refresh`: searchable at
/// once rather than at the index's next refresh.
pub async fn index_with_versions(
    es: &Es,
    entries: Vec<(Vec<usize>, Value, Value)>,
    refresh: bool,
) -> Result<Rejected, ProjectionError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines = Vec::with_capacity(entries.len() * 2);
    let mut owners = Vec::with_capacity(entries.len());
    for (records, action, document) in entries {
        lines.push(action);
        lines.push(document);
        owners.push(records);
    }
    let items = es.bulk(lines, refresh).await?;
    let mut rejected = Vec::new();
    for (item, records) in items.iter().zip(owners) {
        let result = &item["index"];
        let status = result["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) || status == 409 {
            continue;
        }
        if status == 429 || status >= 500 {
            return Err(EsError::Status {
                what: "bulk item".to_owned(),
                status: status as u16,
                body: result.to_string(),
            }
            .into());
        }
        let reason = format!("elasticsearch refused the document: {}", result["error"]);
        rejected.extend(records.into_iter().map(|record| (record, reason.clone())));
    }
    Ok(rejected)
}
