//! Customer search: one document per customer (id = customer id), its latest state, with
//! the stream version as the external version, so Elasticsearch itself refuses to let an
//! older state overwrite a newer one. `search_text` holds every searchable field folded
//! to ASCII (and umlauts transliterated), since the index has no folding analyzer.

use serde_json::{Value, json};

use schemas::EventEnvelope;

use super::{Projection, ProjectionError, Rejected, Sinks, index_touched_streams};
use crate::views::{self, CustomerView};
use read_model::search_text::search_text;

pub async fn apply(sinks: &Sinks, batch: &[EventEnvelope]) -> Result<Rejected, ProjectionError> {
    let alias = sinks.targets.of(Projection::Search);
    // A small batch is the live tail: make it searchable now (people search for what they
    // just created). A large one is a catch-up, where one refresh a second is plenty and
    // refreshing every batch would slow it down.
    let refresh = batch.len() < REFRESH_BELOW;
    index_touched_streams(sinks, batch, refresh, |_, _, _, events| {
        Ok(views::fold(events)?
            .last()
            .map(|view| (action(alias, view), document(view)))
            .into_iter()
            .collect())
    })
    .await
}

/// Batches smaller than this are refreshed at once.
const REFRESH_BELOW: usize = 100;

pub fn action(index: &str, view: &CustomerView) -> Value {
    json!({ "index": { "_index": index, "_id": view.customer_id, "version": view.version, "version_type": "external" } })
}

/// The search document of a customer.
pub fn document(view: &CustomerView) -> Value {
    let mut searchable: Vec<&str> = vec![view.name.as_str(), view.email.as_str()];
    searchable.extend(view.email.split(['@', '.']));
    if let Some(phone) = &view.phone {
        searchable.push(phone.trim_start_matches('+'));
    }
    if let Some(address) = &view.address {
        searchable.extend([
            address.street.as_str(),
            address.city.as_str(),
            address.postal_code.as_str(),
            address.country.as_str(),
        ]);
    }
    searchable.extend(view.tags.iter().map(String::as_str));
    json!({
        "tenant_id": view.tenant_id,
        "customer_id": view.customer_id,
        "stream_id": view.stream_id,
        "version": view.version,
        "global_position": view.global_position,
        "name": view.name,
        "email": view.email,
        "phone": view.phone,
        "address": view.address,
        "country": view.address.as_ref().map(|a| a.country.clone()),
        "tags": view.tags,
        "status": if view.archived { "archived" } else { "active" },
        "search_text": search_text(searchable),
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    })
}
