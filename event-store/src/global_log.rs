//! The global log: every tenant's events, in an order that never skips a late commit.
//!
//! Positions come from a sequence, taken at insert; transactions commit in any order
//! after that. A reader that remembers "the highest position I saw" skips an event
//! whose transaction took a lower position but committed after the reader passed it.
//!
//! So the log is ordered and checkpointed by (transaction id, position), and read only
//! below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction with an id below
//! that horizon has finished, and every transaction that can still commit has an id at
//! or above it, so nothing can ever appear behind a checkpoint. The price is latency
//! while a long transaction is open: the horizon waits for it.
//!
//! The read runs in the database function `read_global_log` (see the migration), the
//! only cross-tenant read the app role has, which applies the horizon itself.

use chrono::{DateTime, Utc};
use schemas::EventEnvelope;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::stream::EventRow;

/// A checkpoint in the global log: the last event read, by its transaction and position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The writing transaction's id (`xid8`).
    pub transaction_id: u64,
    pub global_position: u64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: Self = Self {
        transaction_id: 0,
        global_position: 0,
    };
}

/// An event read from the global log, with the checkpoint that resumes after it.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalLogEvent {
    pub position: LogPosition,
    pub event: EventEnvelope,
}

pub(crate) async fn read(
    pool: &PgPool,
    after: LogPosition,
    max_events: u32,
) -> Result<Vec<GlobalLogEvent>, EventStoreError> {
    // xid8 has no sqlx type; it crosses the wire as text.
    let rows = sqlx::query!(
        r#"
        SELECT transaction_id::text AS "transaction_id!", global_position AS "global_position!",
               tenant_id AS "tenant_id!", stream_id AS "stream_id!",
               stream_version AS "stream_version!", event_id AS "event_id!",
               event_type AS "event_type!", schema_version AS "schema_version!",
               payload AS "payload!", metadata AS "metadata!", recorded_at AS "recorded_at!"
        FROM read_global_log($1::text::xid8, $2, $3)
        "#,
        after.transaction_id.to_string(),
        i64::try_from(after.global_position).expect("positions fit in bigint"),
        i32::try_from(max_events).unwrap_or(i32::MAX),
    )
    .fetch_all(pool)
    .await?;

    rows.into_iter()
        .map(|r| {
            let transaction_id =
                r.transaction_id
                    .parse::<u64>()
                    .map_err(|e| EventStoreError::MalformedRow {
                        position: r.global_position,
                        reason: format!("transaction id: {e}"),
                    })?;
            let event = EventRow {
                global_position: r.global_position,
                tenant_id: r.tenant_id,
                stream_id: r.stream_id,
                stream_version: r.stream_version,
                event_id: r.event_id,
                event_type: r.event_type,
                schema_version: r.schema_version,
                payload: r.payload,
                metadata: r.metadata,
                recorded_at: r.recorded_at,
            }
            .into_envelope()?;
            Ok(GlobalLogEvent {
                position: LogPosition {
                    transaction_id,
                    global_position: event.global_position,
                },
                event,
            })
        })
        .collect()
}

/// An event of the global log as stored, its payload and metadata left as JSON text: what
/// the relay forwards without looking inside (parsing and re-serializing every payload
/// was most of its work).
#[derive(Debug, Clone)]
pub struct RawLogEvent {
    pub position: LogPosition,
    pub event_id: Uuid,
    pub tenant_id: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub recorded_at: DateTime<Utc>,
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
}

/// The envelope's JSON shape, field for field as [`EventEnvelope`] serializes, with the
/// payload and metadata copied as they are.
#[derive(Serialize)]
struct RawEnvelope<'a> {
    event_id: Uuid,
    tenant_id: &'a str,
    stream_id: &'a str,
    stream_version: i64,
    global_position: u64,
    event_type: &'a str,
    schema_version: i32,
    recorded_at: DateTime<Utc>,
    payload: &'a RawValue,
    metadata: &'a RawValue,
}

impl RawLogEvent {
    /// The event envelope as JSON, the document [`EventEnvelope`] reads.
    pub fn envelope_json(&self) -> Vec<u8> {
        self.serialize(&self.payload, &self.metadata)
    }

    /// The envelope of a reference record: where the event is, and nothing of its size
    /// (a `null` payload, metadata with empty values), for a reader to fetch it whole from
    /// the store.
    pub fn reference_json(&self) -> Vec<u8> {
        let empty = serde_json::json!({
            "actor_id": schemas::EventMetadata::SYSTEM_ACTOR,
            "actor_name": "", "request_id": "", "correlation_id": "", "causation_id": "",
        });
        let null = RawValue::from_string("null".to_owned()).expect("null is JSON");
        let metadata = RawValue::from_string(empty.to_string()).expect("metadata is JSON");
        self.serialize(&null, &metadata)
    }

    fn serialize(&self, payload: &RawValue, metadata: &RawValue) -> Vec<u8> {
        serde_json::to_vec(&RawEnvelope {
            event_id: self.event_id,
            tenant_id: &self.tenant_id,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            global_position: self.position.global_position,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            payload,
            metadata,
        })
        .expect("envelopes serialize to JSON")
    }

    /// The aggregate: the stream id's category.
    pub fn category(&self) -> &str {
        self.stream_id
            .split_once('-')
            .map_or(&self.stream_id, |(category, _)| category)
    }
}

/// Like [`read`], with payloads and metadata as stored JSON text, through the view
/// `global_log` (the relay's role; see the roles migration): the same horizon, the same
/// order, without the function's cost.
pub(crate) async fn read_raw(
    pool: &PgPool,
    after: LogPosition,
    max_events: u32,
) -> Result<Vec<RawLogEvent>, EventStoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT transaction_id::text AS "transaction_id!", global_position AS "global_position!",
               tenant_id AS "tenant_id!", stream_id AS "stream_id!",
               stream_version AS "stream_version!", event_id AS "event_id!",
               event_type AS "event_type!", schema_version AS "schema_version!",
               payload AS "payload!: Json<Box<RawValue>>",
               metadata AS "metadata!: Json<Box<RawValue>>",
               recorded_at AS "recorded_at!"
        FROM global_log
        WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
        ORDER BY transaction_id, global_position
        LIMIT $3
        "#,
        after.transaction_id.to_string(),
        i64::try_from(after.global_position).expect("positions fit in bigint"),
        i64::from(max_events),
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let malformed = |reason: String| EventStoreError::MalformedRow {
                position: r.global_position,
                reason,
            };
            Ok(RawLogEvent {
                position: LogPosition {
                    transaction_id: r
                        .transaction_id
                        .parse()
                        .map_err(|e| malformed(format!("transaction id: {e}")))?,
                    global_position: u64::try_from(r.global_position)
                        .map_err(|e| malformed(e.to_string()))?,
                },
                event_id: r.event_id,
                tenant_id: r.tenant_id,
                stream_id: r.stream_id,
                stream_version: r.stream_version,
                event_type: r.event_type,
                schema_version: r.schema_version,
                recorded_at: r.recorded_at,
                payload: r.payload.0,
                metadata: r.metadata.0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_envelope_is_the_envelope_consumers_read() {
        let raw = RawLogEvent {
            position: LogPosition {
                transaction_id: 7,
                global_position: 42,
            },
            event_id: Uuid::now_v7(),
            tenant_id: "acme".to_owned(),
            stream_id: "customer-1".to_owned(),
            stream_version: 3,
            event_type: "CustomerUpdated".to_owned(),
            schema_version: 1,
            recorded_at: Utc::now(),
            payload: RawValue::from_string(r#"{"name": "Ada"}"#.to_owned()).unwrap(),
            metadata: RawValue::from_string(
                r#"{"actor_id": "00000000-0000-0000-0000-000000000000", "actor_name": "A",
                    "request_id": "r", "correlation_id": "c", "causation_id": "x"}"#
                    .to_owned(),
            )
            .unwrap(),
        };
        let envelope: EventEnvelope = serde_json::from_slice(&raw.envelope_json()).unwrap();
        assert_eq!(envelope.event_id, raw.event_id);
        assert_eq!(envelope.global_position, 42);
        assert_eq!(envelope.stream_version, 3);
        assert_eq!(envelope.payload, serde_json::json!({"name": "Ada"}));
        assert_eq!(envelope.metadata.actor_name, "A");
        assert_eq!(raw.category(), "customer");
        let reference: EventEnvelope = serde_json::from_slice(&raw.reference_json()).unwrap();
        assert!(reference.payload.is_null());
        assert_eq!(
            reference.metadata.request_id, "",
            "nothing of the event's size"
        );
        assert_eq!(reference.event_id, raw.event_id);
    }
}
