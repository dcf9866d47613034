//! Reading one stream forward, and turning stored rows into envelopes.

use chrono::{DateTime, Utc};
use schemas::{EventEnvelope, StreamId, TenantId};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::tenant_scope::TenantTransaction;

/// An `events` row as selected by the readers.
pub(crate) struct EventRow {
    pub global_position: i64,
    pub tenant_id: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl EventRow {
    pub(crate) fn into_envelope(self) -> Result<EventEnvelope, EventStoreError> {
        let position = self.global_position;
        let malformed = |reason: String| EventStoreError::MalformedRow { position, reason };
        Ok(EventEnvelope {
            event_id: self.event_id,
            tenant_id: TenantId::parse(self.tenant_id).map_err(|e| malformed(e.to_string()))?,
            stream_id: StreamId::parse(self.stream_id).map_err(|e| malformed(e.to_string()))?,
            stream_version: u64::try_from(self.stream_version)
                .map_err(|e| malformed(e.to_string()))?,
            global_position: u64::try_from(self.global_position)
                .map_err(|e| malformed(e.to_string()))?,
            event_type: self.event_type,
            schema_version: u32::try_from(self.schema_version)
                .map_err(|e| malformed(e.to_string()))?,
            recorded_at: self.recorded_at,
            payload: self.payload,
            metadata: serde_json::from_value(self.metadata)
                .map_err(|e| malformed(format!("metadata: {e}")))?,
        })
    }
}

impl TenantTransaction<'_> {
    /// Reads `stream` from `from_version` (inclusive), at most `max_events`, oldest first.
    pub async fn read_stream(
        &mut self,
        stream: &StreamId,
        from_version: u64,
        max_events: u32,
    ) -> Result<Vec<EventEnvelope>, EventStoreError> {
        let tenant = self.tenant().as_str().to_owned();
        let from_version = i64::try_from(from_version).unwrap_or(i64::MAX);
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            SELECT global_position, tenant_id, stream_id, stream_version, event_id, event_type,
                   schema_version, payload, metadata, recorded_at
            FROM events
            WHERE tenant_id = $1 AND stream_id = $2 AND stream_version >= $3
            ORDER BY stream_version
            LIMIT $4
            "#,
            tenant,
            stream.as_str(),
            from_version,
            i64::from(max_events),
        )
        .fetch_all(self.connection())
        .await?;
        rows.into_iter().map(EventRow::into_envelope).collect()
    }

    /// Reads whole streams at once, each oldest first, streams in the order given.
    pub async fn read_streams(
        &mut self,
        streams: &[StreamId],
    ) -> Result<Vec<EventEnvelope>, EventStoreError> {
        let tenant = self.tenant().as_str().to_owned();
        let ids: Vec<String> = streams.iter().map(|s| s.as_str().to_owned()).collect();
        let rows = sqlx::query_as!(
            EventRow,
            r#"
            SELECT global_position, tenant_id, stream_id, stream_version, event_id, event_type,
                   schema_version, payload, metadata, recorded_at
            FROM events
            WHERE tenant_id = $1 AND stream_id = ANY($2)
            ORDER BY array_position($2, stream_id), stream_version
            "#,
            tenant,
            &ids,
        )
        .fetch_all(self.connection())
        .await?;
        rows.into_iter().map(EventRow::into_envelope).collect()
    }
}
