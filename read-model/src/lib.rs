//! Chronicle's read side: the projections' storage as the readers and the writers both see
//! it. The projector writes it; the command API queries it; neither owns the other.
//!
//! # Layout
//! - [`es`]: a thin JSON layer over the `elasticsearch` client.
//! - [`indices`]: the index layout: templates, indices behind aliases, tenant aliases.
//! - [`search_text`]: folding text to ASCII for search, the same way for documents and
//!   queries.
//! - [`customers`]: the PostgreSQL read model `customer_views`: one customer, a page.
//! - [`progress`]: the notes the read model's writer sends as customers reach versions.
//! - [`search`]: customer search.
//! - [`history`]: a customer's change history.
//! - [`audit`]: a tenant's audit log.
//!
//! Every query is scoped to one tenant by construction: PostgreSQL reads run in the tenant's
//! scope (row-level security), and every Elasticsearch query carries a `tenant_id` filter
//! that the caller's input can neither remove nor widen (input only ever reaches `match`
//! clauses and term values, never a query string). The types returned are plain data; the
//! HTTP contract (and its OpenAPI schema) is the command API's.

pub mod audit;
pub mod customers;
pub mod es;
pub mod history;
pub mod indices;
pub mod progress;
pub mod search;
pub mod search_text;

use serde_json::Value;

pub use es::{Es, EsError};
pub use indices::IndexKind;

/// Why a read failed: the store or Elasticsearch is away or refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("database: {0}")]
    Database(#[from] event_store::EventStoreError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] EsError),
}

/// The `_source` of every hit of a search response.
fn hits(response: &Value) -> Vec<Value> {
    response["hits"]["hits"]
        .as_array()
        .map(|hits| hits.iter().map(|h| h["_source"].clone()).collect())
        .unwrap_or_default()
}
