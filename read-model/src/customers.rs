//! The customer read model in PostgreSQL: `customer_views`, one row per customer, its latest
//! state. Reads run in the tenant's scope, so row-level security is what confines them.

use chrono::{DateTime, Utc};
use event_store::{EventStore, TenantId};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::ReadError;

/// The table the customers projection keeps and these queries read. A replay builds its
/// successor under another name and renames it to this one.
pub const TABLE: &str = "customer_views";

/// A customer as the read endpoints return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerRecord {
    pub id: Uuid,
    pub version: u64,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Option<Value>,
    pub tags: Vec<String>,
    /// `active` or `archived`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A `customer_views` row as the queries select it.
struct CustomerRow {
    customer_id: Uuid,
    version: i64,
    name: String,
    email: String,
    phone: Option<String>,
    address: Option<Value>,
    tags: Vec<String>,
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CustomerRow> for CustomerRecord {
    fn from(row: CustomerRow) -> Self {
        Self {
            id: row.customer_id,
            version: u64::try_from(row.version).unwrap_or_default(),
            name: row.name,
            email: row.email,
            phone: row.phone,
            address: row.address,
            tags: row.tags,
            status: if row.archived { "archived" } else { "active" }.to_owned(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// One customer from the read model; `None` if the projection has not seen it (or it is
/// another tenant's: row-level security hides it).
pub async fn find(
    store: &EventStore,
    tenant: &TenantId,
    id: Uuid,
) -> Result<Option<CustomerRecord>, ReadError> {
    let mut tx = store.begin(tenant).await?;
    let row = sqlx::query_as!(
        CustomerRow,
        r#"SELECT customer_id, version, name, email, phone, address, tags, archived, created_at, updated_at
           FROM customer_views WHERE tenant_id = $1 AND customer_id = $2"#,
        tenant.as_str(),
        id
    )
    .fetch_optional(tx.connection())
    .await?;
    tx.commit().await?;
    Ok(row.map(CustomerRecord::from))
}

/// A page of customers in creation order (ids are UUID v7), after `after`.
pub async fn page(
    store: &EventStore,
    tenant: &TenantId,
    limit: u32,
    after: Option<Uuid>,
    include_archived: bool,
) -> Result<Vec<CustomerRecord>, ReadError> {
    let mut tx = store.begin(tenant).await?;
    let rows = sqlx::query_as!(
        CustomerRow,
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
    Ok(rows.into_iter().map(CustomerRecord::from).collect())
}
