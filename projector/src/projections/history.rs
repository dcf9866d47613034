//! Change history: one document per customer version (id = `<stream>:<version>`, external
//! version = the stream version), with each changed field's old and new value, the actor
//! and the time. Only versions from the lowest one in the batch are (re)written.

use event_store::TenantId;
use std::collections::HashSet;

use serde_json::{Value, json};

use schemas::{CustomerEvent, DomainEvent, EventEnvelope, StreamId};

use super::{
    About, Held, Projection, ProjectionError, Rejected, Shape, Sinks, Storage,
    index_touched_streams, streams,
};
use crate::replay::ReplayError;
use crate::replay::build::{Build, BuildOutcome, BuildTarget, DynBuild, IndexBuild};
use crate::views::{self, Folded, HistoryEntry, ViewStep};

/// Each customer's change history in Elasticsearch.
#[derive(Debug, Clone, Copy)]
pub struct History;

impl Projection for History {
    const ABOUT: About = About::new(
        "history",
        &[CustomerEvent::AGGREGATE],
        Storage::Index(read_model::history::INDEX),
        Shape::EveryEvent,
    );

    async fn apply(
        &self,
        sinks: &Sinks,
        batch: &[EventEnvelope],
    ) -> Result<Rejected, ProjectionError> {
        let alias = sinks.targets.of(self);
        index_touched_streams(sinks, batch, false, |tenant, stream, touched, events| {
            Ok(views::history(events)?
                .iter()
                .filter(|entry| entry.version >= touched.lowest_version)
                .map(|entry| document(alias, tenant.as_str(), stream.as_str(), entry))
                .collect())
        })
        .await
    }

    async fn held(&self, sinks: &Sinks, tenant: &TenantId) -> Result<Vec<Held>, ProjectionError> {
        streams::held_documents(sinks, self, tenant, "version", &["stream_id", "version"]).await
    }

    fn builder(&self, target: BuildTarget) -> Box<dyn DynBuild> {
        Box::new(HistoryBuild(target.index_build()))
    }

    /// One document per version.
    async fn forget(
        &self,
        sinks: &Sinks,
        tenant: &TenantId,
        subject: &StreamId,
    ) -> Result<u64, ProjectionError> {
        let target = sinks.targets.of(self);
        let documents = streams::subject_documents(&sinks.es, target, tenant, subject).await?;
        Ok(streams::delete_documents(&sinks.es, &documents).await?)
    }
}

/// A rebuild: one document per customer version, as the log is read.
struct HistoryBuild(IndexBuild);

impl Build for HistoryBuild {
    fn reads_views(&self) -> bool {
        true
    }

    async fn feed(
        &mut self,
        envelope: &EventEnvelope,
        step: Option<&ViewStep<'_>>,
    ) -> Result<(), ReplayError> {
        if let Some(step) = step {
            let entry = views::history_entry(step.previous, step.next, envelope);
            let (action, document) = document(
                &self.0.index,
                envelope.tenant_id.as_str(),
                envelope.stream_id.as_str(),
                &entry,
            );
            self.0.push(action, document).await?;
        }
        Ok(())
    }

    async fn finish(&mut self, _folded: &Folded) -> Result<BuildOutcome, ReplayError> {
        Ok(self.0.finish().await?)
    }

    fn written_ids(&self) -> Option<&HashSet<String>> {
        self.0.written_ids()
    }
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
