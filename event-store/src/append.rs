//! Appending to a stream with optimistic concurrency.
//!
//! One statement per append: a data-modifying CTE moves the stream's version in
//! `streams` (or creates it) under the expected-version condition, and inserts every
//! event numbered from the old version, all in one round trip. If the condition fails,
//! the CTE yields no row, nothing is inserted, and the append is a
//! [`EventStoreError::Concurrency`].

use std::fmt;

use chrono::{DateTime, Utc};
use schemas::{DomainEvent, EventMetadata, StreamId};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::tenant_scope::TenantTransaction;

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
            columns.event_ids.push(event.event_id);
            columns.event_types.push(event.event_type.to_owned());
            columns
                .schema_versions
                .push(i32::try_from(event.schema_version).expect("schema versions are small"));
            columns.payloads.push(event.payload);
            columns
                .metadata
                .push(serde_json::to_value(&event.metadata).expect("metadata serializes"));
        }
        Ok(columns)
    }
}

/// The rows `RETURNING` gives back.
struct Appended {
    stream_version: i64,
    global_position: i64,
    recorded_at: DateTime<Utc>,
}

fn to_db_version(version: u64) -> i64 {
    i64::try_from(version).expect("stream versions fit in bigint")
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
        if events.is_empty() {
            return Err(EventStoreError::NothingToAppend);
        }
        let count = i64::try_from(events.len()).expect("a batch fits in bigint");
        let columns = EventColumns::of(stream, events)?;
        let tenant = self.tenant().as_str().to_owned();
        let conn = self.connection();

        let inserted = match expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => {
                sqlx::query_as!(
                    Appended,
                    r#"
                    WITH stream AS (
                        INSERT INTO streams (tenant_id, stream_id, version) VALUES ($1, $2, $3)
                        ON CONFLICT (tenant_id, stream_id) DO NOTHING
                        RETURNING 0::bigint AS base
                    )
                    INSERT INTO events (tenant_id, stream_id, stream_version, event_id, event_type,
                                        schema_version, payload, metadata)
                    SELECT $1, $2, stream.base + e.ordinal, e.event_id, e.event_type,
                           e.schema_version, e.payload, e.metadata
                    FROM stream,
                         UNNEST($4::uuid[], $5::text[], $6::int4[], $7::jsonb[], $8::jsonb[])
                             WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ordinal)
                    ORDER BY e.ordinal
                    RETURNING stream_version, global_position, recorded_at
                    "#,
                    tenant,
                    stream.as_str(),
                    count,
                    &columns.event_ids,
                    &columns.event_types,
                    &columns.schema_versions,
                    &columns.payloads,
                    &columns.metadata,
                )
                .fetch_all(&mut *conn)
                .await
            }
            ExpectedVersion::Exact(version) => {
                sqlx::query_as!(
                    Appended,
                    r#"
                    WITH stream AS (
                        UPDATE streams SET version = version + $3
                        WHERE tenant_id = $1 AND stream_id = $2 AND version = $9
                        RETURNING version - $3 AS base
                    )
                    INSERT INTO events (tenant_id, stream_id, stream_version, event_id, event_type,
                                        schema_version, payload, metadata)
                    SELECT $1, $2, stream.base + e.ordinal, e.event_id, e.event_type,
                           e.schema_version, e.payload, e.metadata
                    FROM stream,
                         UNNEST($4::uuid[], $5::text[], $6::int4[], $7::jsonb[], $8::jsonb[])
                             WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ordinal)
                    ORDER BY e.ordinal
                    RETURNING stream_version, global_position, recorded_at
                    "#,
                    tenant,
                    stream.as_str(),
                    count,
                    &columns.event_ids,
                    &columns.event_types,
                    &columns.schema_versions,
                    &columns.payloads,
                    &columns.metadata,
                    to_db_version(version),
                )
                .fetch_all(&mut *conn)
                .await
            }
            ExpectedVersion::Any => {
                sqlx::query_as!(
                    Appended,
                    r#"
                    WITH stream AS (
                        INSERT INTO streams (tenant_id, stream_id, version) VALUES ($1, $2, $3)
                        ON CONFLICT (tenant_id, stream_id)
                            DO UPDATE SET version = streams.version + EXCLUDED.version
                        RETURNING version - $3 AS base
                    )
                    INSERT INTO events (tenant_id, stream_id, stream_version, event_id, event_type,
                                        schema_version, payload, metadata)
                    SELECT $1, $2, stream.base + e.ordinal, e.event_id, e.event_type,
                           e.schema_version, e.payload, e.metadata
                    FROM stream,
                         UNNEST($4::uuid[], $5::text[], $6::int4[], $7::jsonb[], $8::jsonb[])
                             WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ordinal)
                    ORDER BY e.ordinal
                    RETURNING stream_version, global_position, recorded_at
                    "#,
                    tenant,
                    stream.as_str(),
                    count,
                    &columns.event_ids,
                    &columns.event_types,
                    &columns.schema_versions,
                    &columns.payloads,
                    &columns.metadata,
                )
                .fetch_all(&mut *conn)
                .await
            }
        };

        let inserted = inserted.map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("events_event_id") => {
                EventStoreError::DuplicateEventId {
                    stream: stream.clone(),
                }
            }
            _ => EventStoreError::Database(error),
        })?;

        let Some(last) = inserted.last() else {
            let actual = self.stream_version(stream).await?;
            return Err(EventStoreError::Concurrency {
                stream: stream.clone(),
                expected,
                actual,
            });
        };
        Ok(AppendResult {
            next_expected_version: u64::try_from(last.stream_version)
                .expect("versions are positive"),
            global_positions: inserted
                .iter()
                .map(|row| u64::try_from(row.global_position).expect("positions are positive"))
                .collect(),
            recorded_at: last.recorded_at,
        })
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
