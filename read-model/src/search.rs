//! Customer search in Elasticsearch: full-text over name, email, phone, address and tags,
//! always filtered to one tenant by the server.

use event_store::TenantId;
use serde_json::{Value, json};

use crate::customers::CustomerRecord;
use crate::es::Es;
use crate::indices::IndexKind;
use crate::search_text::search_text;
use crate::{ReadError, hits};

/// The index this reads, behind the alias `<prefix>-customers`.
pub const INDEX: IndexKind = IndexKind::new(
    "customers",
    include_str!("../../infra/elasticsearch/customers.json"),
);

/// Full-text search over a tenant's customers: name, email, phone, address and tags,
/// folded to ASCII and typo-tolerant; optionally only those with `tag`.
pub async fn customers(
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
        .post(&format!("/{}/_search", INDEX.alias(prefix)), body)
        .await?;
    let total = response["hits"]["total"]["value"].as_u64().unwrap_or(0);
    let items = hits(&response)
        .into_iter()
        .filter_map(|source| customer_from_search(&source))
        .collect();
    Ok((items, total))
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
