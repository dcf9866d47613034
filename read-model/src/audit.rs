//! The audit log in Elasticsearch: every event of a tenant, who, when, what, in log order.

use chrono::{DateTime, Utc};
use event_store::TenantId;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::es::Es;
use crate::history::Actor;
use crate::indices::IndexKind;
use crate::{ReadError, hits};

/// The index this reads, behind the alias `<prefix>-audit`.
pub const INDEX: IndexKind = IndexKind::new(
    "audit",
    include_str!("../../infra/elasticsearch/audit.json"),
);

/// Which audit entries to return.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// A user id, or a display name.
    pub actor: Option<String>,
    pub event_type: Option<String>,
}

/// One event in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditItem {
    pub event_id: String,
    pub event_type: String,
    pub stream_id: String,
    pub stream_version: u64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub request_id: String,
    pub correlation_id: String,
}

/// A page of the tenant's audit log in log order, after the `after` cursor (a global
/// position); returns the cursor of the next page when there may be one.
pub async fn page(
    es: &Es,
    prefix: &str,
    tenant: &TenantId,
    filter: &AuditFilter,
    limit: u32,
    after: Option<u64>,
) -> Result<(Vec<AuditItem>, Option<u64>), ReadError> {
    let mut filters = vec![json!({ "term": { "tenant_id": tenant.as_str() } })];
    if filter.from.is_some() || filter.to.is_some() {
        filters
            .push(json!({ "range": { "recorded_at": { "gte": filter.from, "lte": filter.to } } }));
    }
    if let Some(actor) = &filter.actor {
        let field = if Uuid::parse_str(actor).is_ok() {
            "actor_id"
        } else {
            "actor_name"
        };
        filters.push(json!({ "term": { field: actor } }));
    }
    if let Some(event_type) = &filter.event_type {
        filters.push(json!({ "term": { "event_type": event_type } }));
    }
    let mut body = json!({
        "size": limit,
        "query": { "bool": { "filter": filters } },
        "sort": [{ "global_position": "asc" }]
    });
    if let Some(after) = after {
        body["search_after"] = json!([after]);
    }
    let response = es
        .post(&format!("/{}/_search", INDEX.alias(prefix)), body)
        .await?;
    let sources = hits(&response);
    let next = if sources.len() == limit as usize {
        sources.last().and_then(|s| s["global_position"].as_u64())
    } else {
        None
    };
    let items = sources
        .into_iter()
        .filter_map(|source| {
            Some(AuditItem {
                event_id: source["event_id"].as_str()?.to_owned(),
                event_type: source["event_type"].as_str()?.to_owned(),
                stream_id: source["stream_id"].as_str()?.to_owned(),
                stream_version: source["stream_version"].as_u64()?,
                at: serde_json::from_value(source["recorded_at"].clone()).ok()?,
                actor: Actor {
                    id: source["actor_id"].as_str()?.to_owned(),
                    name: source["actor_name"].as_str()?.to_owned(),
                },
                request_id: source["request_id"].as_str().unwrap_or_default().to_owned(),
                correlation_id: source["correlation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    Ok((items, next))
}
