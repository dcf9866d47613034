//! The envelope around every stored event, as the contract names it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{StreamId, TenantId};

/// One stored event with everything a consumer needs to place it.
///
/// This is the Kafka record value and what projectors decode; `payload` is decoded into a
/// [`crate::DomainEvent`] by `event_type` and `schema_version`, through upcasters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    /// UUID v7: unique, and roughly time-ordered, which keeps the index on it compact.
    pub event_id: Uuid,
    pub tenant_id: TenantId,
    pub stream_id: StreamId,
    /// 1 for the first event of a stream, then +1 per event, without gaps.
    pub stream_version: u64,
    /// Position in the store's global log; unique, but not commit-ordered (see the
    /// event store's global log reader for why).
    pub global_position: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// Who caused an event and within which request; every event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetadata {
    /// The user (JWT `sub`) who issued the command; [`EventMetadata::SYSTEM_ACTOR`] for
    /// Chronicle itself (bootstrap, migrations of data).
    pub actor_id: Uuid,
    /// The actor's display name when the event was recorded, so an audit trail stays
    /// readable after the user is renamed or removed.
    pub actor_name: String,
    /// The `x-request-id` of the HTTP request that appended the event.
    pub request_id: String,
    /// Ties together everything one user action caused, across requests and services.
    pub correlation_id: String,
    /// The id of the message (request, command or event) that directly caused this one.
    pub causation_id: String,
}

impl EventMetadata {
    /// The actor id Chronicle uses for events it records on its own behalf.
    pub const SYSTEM_ACTOR: Uuid = Uuid::nil();
}
