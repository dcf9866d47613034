//! The audit log: every event of every tenant, one document each (id = event id, external
//! version = global position). A tenant's registration also creates its filtered aliases
//! for Kibana.

use schemas::{DomainEvent, EventEnvelope, EventType, TenantEvent, TenantRegistered};
use serde_json::{Value, json};

use super::{Projection, ProjectionError, Rejected, Sinks, index_with_versions};
use read_model::indices::ensure_tenant_aliases;

pub async fn apply(sinks: &Sinks, batch: &[EventEnvelope]) -> Result<Rejected, ProjectionError> {
    let alias = sinks.targets.of(Projection::Audit);
    let mut entries = Vec::with_capacity(batch.len());
    for (index, envelope) in batch.iter().enumerate() {
        let (action, document) = document(alias, envelope);
        entries.push((vec![index], action, document));
    }
    let rejected = index_with_versions(&sinks.es, entries, false).await?;
    for envelope in batch {
        if envelope.stream_id.category() == TenantEvent::AGGREGATE
            && envelope.event_type == TenantRegistered::NAME
        {
            ensure_tenant_aliases(&sinks.es, &sinks.index_prefix, envelope.tenant_id.as_str())
                .await?;
        }
    }
    Ok(rejected)
}

pub fn document(index: &str, envelope: &EventEnvelope) -> (Value, Value) {
    let action = json!({ "index": {
        "_index": index, "_id": envelope.event_id,
        "version": envelope.global_position, "version_type": "external"
    }});
    let metadata = &envelope.metadata;
    let document = json!({
        "tenant_id": envelope.tenant_id,
        "event_id": envelope.event_id,
        "event_type": envelope.event_type,
        "schema_version": envelope.schema_version,
        "aggregate": envelope.stream_id.category(),
        "stream_id": envelope.stream_id,
        "stream_version": envelope.stream_version,
        "global_position": envelope.global_position,
        "recorded_at": envelope.recorded_at,
        "actor_id": metadata.actor_id,
        "actor_name": metadata.actor_name,
        "request_id": metadata.request_id,
        "correlation_id": metadata.correlation_id,
        "causation_id": metadata.causation_id,
        "payload": envelope.payload,
    });
    (action, document)
}
