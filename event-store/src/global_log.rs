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

use schemas::EventEnvelope;
use sqlx::PgPool;

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
