//! Each customer's change history in Elasticsearch: one document per version.

use chrono::{DateTime, Utc};
use event_store::TenantId;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::es::Es;
use crate::indices::IndexKind;
use crate::{ReadError, hits};

/// The index this reads, behind the alias `<prefix>-history`.
pub const INDEX: IndexKind = IndexKind::new(
    "history",
    include_str!("../../infra/elasticsearch/history.json"),
);

/// One version in a customer's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryItem {
    pub version: u64,
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub actor: Actor,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actor {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// A customer's history, oldest first.
pub async fn of_customer(
    es: &Es,
    prefix: &str,
    tenant: &TenantId,
    customer_id: Uuid,
) -> Result<Vec<HistoryItem>, ReadError> {
    let body = json!({
        "size": 10_000,
        "query": { "bool": { "filter": [
            { "term": { "tenant_id": tenant.as_str() } },
            { "term": { "customer_id": customer_id.to_string() } }
        ]}},
        "sort": [{ "version": "asc" }]
    });
    let response = es
        .post(&format!("/{}/_search", INDEX.alias(prefix)), body)
        .await?;
    // Values were stored as JSON text (one keyword field for any shape); read them back.
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null)
    };
    Ok(hits(&response)
        .into_iter()
        .filter_map(|source| {
            Some(HistoryItem {
                version: source["version"].as_u64()?,
                at: serde_json::from_value(source["at"].clone()).ok()?,
                event_type: source["event_type"].as_str()?.to_owned(),
                actor: Actor {
                    id: source["actor"]["id"].as_str()?.to_owned(),
                    name: source["actor"]["name"].as_str()?.to_owned(),
                },
                changes: source["changes"]
                    .as_array()
                    .map(|changes| {
                        changes
                            .iter()
                            .map(|c| FieldChange {
                                field: c["field"].as_str().unwrap_or_default().to_owned(),
                                old: parse(&c["old"]),
                                new: parse(&c["new"]),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}
