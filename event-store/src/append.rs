//! Appending to a stream with optimistic concurrency.
//!
//! One call per append, of the database function `append_to_stream` (see its migration):
//! it moves the stream's version in `streams` (or creates it) under the expected-version
//! condition and inserts every event numbered from the old version. If the condition
//! fails, nothing is inserted, the function says so with the stream's actual version, and
//! the append is an [`EventStoreError::Concurrency`]. The same call serves a tenant
//! transaction (one statement of it) and a write on its own (one round trip, autocommit).

use std::fmt;

use chrono::{DateTime, Utc};
use schemas::{DomainEvent, EventMetadata, StreamId, TenantId};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::tenant_scope::TenantTransaction;

/// The largest event the store takes: its payload and metadata as stored JSON. An event
/// travels on as one Kafka record (1 MB by default) and one Elasticsearch document per
/// projection; a quarter of Kafka's limit leaves room for the envelope and for growth.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What the caller believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version is (concurrent appends still serialize).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (`Exact(0)` means `NoStream`).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream | Self::Exact(0) => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "{version}"),
        }
    }
}

/// An event about to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// The aggregate the event belongs to; must be the stream's category.
    pub aggregate: &'static str,
    pub event_type: &'static str,
    pub schema_version: u32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// Wraps a domain event with a fresh UUID v7 id.
    pub fn new<E: DomainEvent>(event: &E, metadata: EventMetadata) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            aggregate: E::AGGREGATE,
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
            metadata,
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append: the version of its last event.
    pub next_expected_version: u64,
    /// Global positions of the appended events, in order.
    pub global_positions: Vec<u64>,
    pub recorded_at: DateTime<Utc>,
}

/// The events' columns, as arrays for one `UNNEST`.
struct EventColumns {
    event_ids: Vec<Uuid>,
    event_types: Vec<String>,
    schema_versions: Vec<i32>,
    payloads: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl EventColumns {
    fn of(stream: &StreamId, events: Vec<NewEvent>) -> Result<Self, EventStoreError> {
        let mut columns = Self {
            event_ids: Vec::with_capacity(events.len()),
            event_types: Vec::with_capacity(events.len()),
            schema_versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
        };
        for event in events {
            if event.aggregate != stream.category() {
                return Err(EventStoreError::WrongStream {
                    stream: stream.clone(),
                    aggregate: event.aggregate,
                });
            }
            let metadata = serde_json::to_value(&event.metadata).expect("metadata serializes");
            let size = json_size(&event.payload) + json_size(&metadata);
            if size > MAX_EVENT_BYTES {
                return Err(EventStoreError::EventTooLarge {
                    size,
                    max: MAX_EVENT_BYTES,
                });
            }
            columns.event_ids.push(event.event_id);
            columns.event_types.push(event.event_type.to_owned());
            columns
                .schema_versions
                .push(i32::try_from(event.schema_version).expect("schema versions are small"));
            columns.payloads.push(event.payload);
            columns.metadata.push(metadata);
        }
        Ok(columns)
    }
}

/// The length of `value` as JSON text.
fn json_size(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).expect("JSON values serialize");
    counter.0
}

/// A row `append_to_stream` returns: an appended event, or the conflict marker.
struct Appended {
    stream_version: i64,
    global_position: Option<i64>,
    recorded_at: Option<DateTime<Utc>>,
    conflict: bool,
}

/// `expected` as the function takes it: -1 any, 0 no stream, n exactly n.
fn to_db_expected(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(version) => {
            i64::try_from(version).expect("stream versions fit in bigint")
        }
    }
}

/// Appends through `executor` (a tenant transaction's connection, or the pool for a write
/// on its own).
pub(crate) async fn append<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    tenant: &TenantId,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult, EventStoreError> {
    if events.is_empty() {
        return Err(EventStoreError::NothingToAppend);
    }
    let columns = EventColumns::of(stream, events)?;
    let rows = sqlx::query_as!(
        Appended,
        r#"SELECT stream_version AS "stream_version!", global_position, recorded_at,
                  conflict AS "conflict!"
           FROM append_to_stream($1, $2, $3, $4, $5, $6, $7, $8)"#,
        tenant.as_str(),
        stream.as_str(),
        to_db_expected(expected),
        &columns.event_ids,
        &columns.event_types,
        &columns.schema_versions,
        &columns.payloads,
        &columns.metadata,
    )
    .fetch_all(executor)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("events_event_id") => {
            EventStoreError::DuplicateEventId {
                stream: stream.clone(),
            }
        }
        _ => EventStoreError::Database(error),
    })?;

    let last = rows.last().expect("the function returns at least one row");
    if last.conflict {
        return Err(EventStoreError::Concurrency {
            stream: stream.clone(),
            expected,
            actual: u64::try_from(last.stream_version).unwrap_or(0),
        });
    }
    Ok(AppendResult {
        next_expected_version: u64::try_from(last.stream_version).expect("versions are positive"),
        global_positions: rows
            .iter()
            .filter_map(|row| row.global_position)
            .map(|position| u64::try_from(position).expect("positions are positive"))
            .collect(),
        recorded_at: last.recorded_at.unwrap_or_else(Utc::now),
    })
}

impl TenantTransaction<'_> {
    /// Appends `events` to `stream` in this transaction if the stream is at `expected`.
    ///
    /// Concurrent appends at the same version: exactly one wins; the others wait for it
    /// on the stream's row and then fail with [`EventStoreError::Concurrency`].
    pub async fn append_to_stream(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let tenant = self.tenant().clone();
        append(self.connection(), &tenant, stream, expected, events).await
    }

    /// The stream's current version; 0 when it does not exist.
    pub async fn stream_version(&mut self, stream: &StreamId) -> Result<u64, EventStoreError> {
        let tenant = self.tenant().as_str().to_owned();
        let version = sqlx::query_scalar!(
            "SELECT version FROM streams WHERE tenant_id = $1 AND stream_id = $2",
            tenant,
            stream.as_str(),
        )
        .fetch_optional(self.connection())
        .await?;
        Ok(version.map_or(0, |v| u64::try_from(v).expect("versions are positive")))
    }
}
