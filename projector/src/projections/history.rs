//! Change history: one document per customer version (id = `<stream>:<version>`, external
//! version = the stream version), with each changed field's old and new value, the actor
//! and the time. Only versions from the lowest one in the batch are (re)written.

use serde_json::{Value, json};

use schemas::EventEnvelope;

use super::{Projection, ProjectionError, Rejected, Sinks, index_touched_streams};
use crate::views::{self, HistoryEntry};

pub async fn apply(sinks: &Sinks, batch: &[EventEnvelope]) -> Result<Rejected, ProjectionError> {
    let alias = sinks.targets.of(Projection::History);
    index_touched_streams(sinks, batch, false, |tenant, stream, touched, events| {
        Ok(views::history(events)?
            .iter()
            .filter(|entry| entry.version >= touched.lowest_version)
            .map(|entry| document(alias, tenant.as_str(), stream.as_str(), entry))
            .collect())
    })
    .await
}

/// The bulk action and document of one history entry.
pub fn document(index: &str, tenant: &str, stream: &str, entry: &HistoryEntry) -> (Value, Value) {
    let customer_id = stream.split_once('-').map_or(stream, |(_, id)| id);
    let action = json!({ "index": {
        "_index": index, "_id": format!("{stream}:{}", entry.version),
        "version": entry.version, "version_type": "external"
    }});
    // Values are kept as JSON text: a field's old and new value may be a string, a list
    // or an object, and one keyword field holds them all for Kibana.
    let as_text = |value: &Value| {
        if value.is_null() {
            Value::Null
        } else {
            Value::String(value.to_string())
        }
    };
    let changes: Vec<Value> = entry
        .changes
        .iter()
        .map(|c| json!({ "field": c.field, "old": as_text(&c.old), "new": as_text(&c.new) }))
        .collect();
    let document = json!({
        "tenant_id": tenant,
        "customer_id": customer_id,
        "stream_id": stream,
        "version": entry.version,
        "global_position": entry.global_position,
        "event_id": entry.event_id,
        "event_type": entry.event_type,
        "at": entry.at,
        "actor": { "id": entry.actor_id, "name": entry.actor_name },
        "request_id": entry.request_id,
        "changed_fields": entry.changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
        "changes": changes,
    });
    (action, document)
}
