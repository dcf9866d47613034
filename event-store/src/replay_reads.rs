//! Reads for rebuilding and verifying projections: which tenants have events, a tenant's
//! whole log, the (stream, version, position) index of a tenant's log, and the horizon
//! below which the global log is settled.

use schemas::{EventEnvelope, StreamId, TenantId};
use sqlx::PgPool;

use crate::error::EventStoreError;
use crate::global_log::LogPosition;
use crate::stream::EventRow;
use crate::tenant_scope::TenantTransaction;

/// One event's place in its stream and in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub stream_id: StreamId,
    pub stream_version: u64,
    pub global_position: u64,
}

/// Every tenant with events, and how many, through the `event_tenants` function (the app
/// role cannot see across tenants otherwise).
pub(crate) async fn tenants_with_events(
    pool: &PgPool,
) -> Result<Vec<(TenantId, u64)>, EventStoreError> {
    let rows = sqlx::query!(
        r#"SELECT tenant_id AS "tenant_id!", events AS "events!" FROM event_tenants()"#
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            let tenant =
                TenantId::parse(row.tenant_id).map_err(|e| EventStoreError::MalformedRow {
                    position: 0,
                    reason: e.to_string(),
                })?;
            Ok((tenant, u64::try_from(row.events).unwrap_or(0)))
        })
        .collect()
}

/// A position every event still to commit lies after: the global log below it is settled.
/// Events of transactions that commit later are read by a catch-up from here.
pub(crate) async fn settled_horizon(pool: &PgPool) -> Result<LogPosition, EventStoreError> {
    let xmin =
        sqlx::query_scalar!(r#"SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS "xmin!""#)
            .fetch_one(pool)
            .await?;
    let xmin: u64 = xmin.parse().map_err(|e| EventStoreError::MalformedRow {
        position: 0,
        reason: format!("snapshot xmin: {e}"),
    })?;
    // (xmin - 1, the largest position) is behind every event of transaction xmin and later.
    Ok(LogPosition {
        transaction_id: xmin.saturating_sub(1),
        global_position: i64::MAX as u64,
    })
}

impl TenantTransaction<'_> {
    /// Every event of the tenant, in log position order (each stream's in version order).
    pub async fn read_all(&mut self) -> Result<Vec<EventEnvelope>, EventStoreError> {
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            SELECT global_position, tenant_id, stream_id, stream_version, event_id, event_type,
                   schema_version, payload, metadata, recorded_at
            FROM events
            ORDER BY global_position
            "#,
        )
        .fetch_all(self.connection())
        .await?;
        rows.into_iter().map(EventRow::into_envelope).collect()
    }

    /// The tenant's events as (stream, version, position), without their payloads, for
    /// comparing a projection with the store. `category` limits them to one aggregate.
    pub async fn logged_events(
        &mut self,
        category: Option<&str>,
    ) -> Result<Vec<LoggedEvent>, EventStoreError> {
        let prefix = category.map(|c| format!("{c}-%"));
        let rows = sqlx::query!(
            r#"
            SELECT stream_id, stream_version, global_position
            FROM events
            WHERE $1::text IS NULL OR stream_id LIKE $1
            "#,
            prefix,
        )
        .fetch_all(self.connection())
        .await?;
        rows.into_iter()
            .map(|row| {
                let malformed = |reason: String| EventStoreError::MalformedRow {
                    position: row.global_position,
                    reason,
                };
                Ok(LoggedEvent {
                    stream_id: StreamId::parse(row.stream_id.clone())
                        .map_err(|e| malformed(e.to_string()))?,
                    stream_version: u64::try_from(row.stream_version)
                        .map_err(|e| malformed(e.to_string()))?,
                    global_position: u64::try_from(row.global_position)
                        .map_err(|e| malformed(e.to_string()))?,
                })
            })
            .collect()
    }

    /// The highest position among the tenant's committed events (0 if none).
    pub async fn last_position(&mut self) -> Result<u64, EventStoreError> {
        let last = sqlx::query_scalar!(
            r#"SELECT coalesce(max(global_position), 0) AS "last!" FROM events"#
        )
        .fetch_one(self.connection())
        .await?;
        Ok(u64::try_from(last).unwrap_or(0))
    }
}
