//! Queries over the projections, for the command API's read endpoints. Every query is
//! scoped to one tenant by construction: PostgreSQL reads run in the tenant's scope
//! (row-level security), and every Elasticsearch query carries a `tenant_id` filter that
//! the caller's input can neither remove nor widen (input only ever reaches `match`
//! clauses and term values, never a query string).

use chrono::{DateTime, Utc};
use event_store::{EventStore, TenantId};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::es::{Es, EsError};
use crate::fold::search_text;
use crate::indices::IndexKind;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("database: {0}")]
    Database(#[from] event_store::EventStoreError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] EsError),
}

/// A customer as the read endpoints return it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerRecord {
    pub id: Uuid,
    pub version: u64,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub address: Option<Value>,
    pub tags: Vec<String>,
    /// `active` or `archived`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One customer from the read model; `None` if the projection has not seen it (or it is
/// another tenant's: row-level security hides it).
pub async fn customer(
    store: &EventStore,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<CustomerRecord>, ReadError> {
    let mut tx = store.begin(tenant).await?;
    let row = sqlx::query!(
        r#"SELECT customer_id, version, name, email, phone, address, tags, archived, created_at, updated_at
           FROM customer_views WHERE tenant_id = $1 AND customer_id = $2"#,
        tenant.as_str(),
        id
    )
    .fetch_optional(tx.connection())
    .await?;
    tx.commit().await?;
    Ok(row.map(|r| CustomerRecord {
        id: r.customer_id,
        version: u64::try_from(r.version).unwrap_or_default(),
        name: r.name,
        email: r.email,
        phone: r.phone,
        address: r.address,
        tags: r.tags,
        status: status(r.archived),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }))
}

fn status(archived: bool) -> String {
    if archived { "archived" } else { "active" }.to_owned()
}

/// A page of customers in creation order (ids are UUID v7), after `after`.
pub async fn customers(
    store: &EventStore,
    tenant: &TenantId,
    limit: u32,
    after: Option<Uuid>,
    include_archived: bool,
) -> Result<Vec<CustomerRecord>, ReadError> {
    let mut tx = store.begin(tenant).await?;
    let rows = sqlx::query!(
        r#"SELECT customer_id, version, name, email, phone, address, tags, archived, created_at, updated_at
           FROM customer_views
           WHERE tenant_id = $1 AND ($2::uuid IS NULL OR customer_id > $2) AND ($3 OR NOT archived)
           ORDER BY customer_id
           LIMIT $4"#,
        tenant.as_str(),
        after,
        include_archived,
        i64::from(limit)
    )
    .fetch_all(tx.connection())
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|r| CustomerRecord {
            id: r.customer_id,
            version: u64::try_from(r.version).unwrap_or_default(),
            name: r.name,
            email: r.email,
            phone: r.phone,
            address: r.address,
            tags: r.tags,
            status: status(r.archived),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

/// Full-text search over a tenant's customers: name, email, phone, address and tags,
/// folded to ASCII and typo-tolerant; optionally only those with `tag`.
pub async fn search(
    es: &Es,
    prefix: &str,
    tenant: &TenantId,
    query: &str,
    tag: Option<&str>,
    limit: u32,
    include_archived: bool,
) -> Result<(Vec<CustomerRecord>, u64), ReadError> {
    let mut filters = vec![json!({ "term": { "tenant_id": tenant.as_str() } })];
    if let Some(tag) = tag {
        filters.push(json!({ "term": { "tags": tag } }));
    }
    if !include_archived {
        filters.push(json!({ "term": { "status": "active" } }));
    }
    let must = if query.trim().is_empty() {
        json!({ "match_all": {} })
    } else {
        json!({ "bool": { "minimum_should_match": 1, "should": [
            { "match": { "search_text": { "query": search_text([query]), "fuzziness": "AUTO", "operator": "and" } } },
            { "multi_match": { "query": query, "fields": ["name^3", "email", "address.street", "address.city"], "fuzziness": "AUTO" } },
            { "term": { "phone": query.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>() } },
            { "term": { "tags": query } }
        ]}})
    };
    let body = json!({
        "size": limit,
        "track_total_hits": true,
        "query": { "bool": { "filter": filters, "must": must } },
        "sort": ["_score", { "customer_id": "asc" }]
    });
    let response = es
        .post(
            &format!("/{}/_search", IndexKind::Customers.alias(prefix)),
            body,
        )
        .await?;
    let total = response["hits"]["total"]["value"].as_u64().unwrap_or(0);
    let items = hits(&response)
        .into_iter()
        .filter_map(|source| customer_from_search(&source))
        .collect();
    Ok((items, total))
}

fn hits(response: &Value) -> Vec<Value> {
    response["hits"]["hits"]
        .as_array()
        .map(|hits| hits.iter().map(|h| h["_source"].clone()).collect())
        .unwrap_or_default()
}

fn customer_from_search(source: &Value) -> Option<CustomerRecord> {
    Some(CustomerRecord {
        id: source["customer_id"].as_str()?.parse().ok()?,
        version: source["version"].as_u64()?,
        name: source["name"].as_str()?.to_owned(),
        email: source["email"].as_str()?.to_owned(),
        phone: source["phone"].as_str().map(str::to_owned),
        address: Some(source["address"].clone()).filter(|a| !a.is_null()),
        tags: serde_json::from_value(source["tags"].clone()).unwrap_or_default(),
        status: source["status"].as_str()?.to_owned(),
        created_at: serde_json::from_value(source["created_at"].clone()).ok()?,
        updated_at: serde_json::from_value(source["updated_at"].clone()).ok()?,
    })
}

/// One version in a customer's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryItem {
    pub version: u64,
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub actor: Actor,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Actor {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    #[schema(value_type = Object)]
    pub old: Value,
    #[schema(value_type = Object)]
    pub new: Value,
}

/// A customer's history, oldest first.
pub async fn history(
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
        .post(
            &format!("/{}/_search", IndexKind::History.alias(prefix)),
            body,
        )
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
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
pub async fn audit(
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
        .post(
            &format!("/{}/_search", IndexKind::Audit.alias(prefix)),
            body,
        )
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
