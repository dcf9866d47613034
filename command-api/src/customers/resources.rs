//! The customer reads as the HTTP API shows them, with their OpenAPI schemas. The read side
//! returns plain data; this is where it becomes the contract.

use chrono::{DateTime, Utc};
use read_model::audit::AuditItem;
use read_model::customers::CustomerRecord;
use read_model::history::{Actor, FieldChange, HistoryItem};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A customer as the read endpoints return it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerResource {
    pub id: Uuid,
    pub version: u64,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    #[schema(value_type = Option<AddressResource>)]
    pub address: Option<Value>,
    pub tags: Vec<String>,
    /// `active` or `archived`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A customer's address as recorded. Its parts are shown as they were recorded, by the
/// rules of their day, so they are plain strings here, not the input's constraints.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AddressResource {
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

impl From<CustomerRecord> for CustomerResource {
    fn from(record: CustomerRecord) -> Self {
        Self {
            id: record.id,
            version: record.version,
            name: record.name,
            email: record.email,
            phone: record.phone,
            address: record.address,
            tags: record.tags,
            status: record.status,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActorRef {
    pub id: String,
    pub name: String,
}

impl From<Actor> for ActorRef {
    fn from(actor: Actor) -> Self {
        Self {
            id: actor.id,
            name: actor.name,
        }
    }
}

/// One version in a customer's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub version: u64,
    pub at: DateTime<Utc>,
    #[schema(schema_with = crate::openapi::fields::event_type)]
    pub event_type: String,
    pub actor: ActorRef,
    pub changes: Vec<FieldChangeResource>,
}

/// A field's value before and after the version; `null` where it had none.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldChangeResource {
    pub field: String,
    /// Any JSON value: a string, a list of tags, an address object, or `null`.
    #[schema(schema_with = any_json)]
    pub old: Value,
    /// Any JSON value, as `old`.
    #[schema(schema_with = any_json)]
    pub new: Value,
}

/// A schema every JSON value satisfies (`{}`); utoipa would say `object` for a `Value`.
fn any_json() -> utoipa::openapi::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .into()
}

impl From<HistoryItem> for HistoryEntry {
    fn from(item: HistoryItem) -> Self {
        Self {
            version: item.version,
            at: item.at,
            event_type: item.event_type,
            actor: item.actor.into(),
            changes: item
                .changes
                .into_iter()
                .map(|FieldChange { field, old, new }| FieldChangeResource { field, old, new })
                .collect(),
        }
    }
}

/// One event in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub event_id: String,
    #[schema(schema_with = crate::openapi::fields::event_type)]
    pub event_type: String,
    pub stream_id: String,
    pub stream_version: u64,
    pub at: DateTime<Utc>,
    pub actor: ActorRef,
    pub request_id: String,
    pub correlation_id: String,
}

impl From<AuditItem> for AuditEntry {
    fn from(item: AuditItem) -> Self {
        Self {
            event_id: item.event_id,
            event_type: item.event_type,
            stream_id: item.stream_id,
            stream_version: item.stream_version,
            at: item.at,
            actor: item.actor.into(),
            request_id: item.request_id,
            correlation_id: item.correlation_id,
        }
    }
}
