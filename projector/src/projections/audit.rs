//! The audit log: every event of every tenant, one document each (id = event id, external
//! version = global position). A tenant's registration also creates its filtered aliases
//! for Kibana. Forgetting a subject keeps its events' facts (who did what, when) and
//! redacts what they said.

use event_store::TenantId;
use std::collections::HashSet;

use schemas::{
    AGGREGATE_NAMES, DomainEvent, EventEnvelope, EventType, StreamId, TenantEvent, TenantRegistered,
};
use serde_json::{Value, json};

use super::{
    About, DynProjection, Held, Projection, ProjectionError, Rejected, Shape, Sinks, Storage,
    index_with_versions, streams,
};
use crate::replay::ReplayError;
use crate::replay::build::{Build, BuildOutcome, BuildTarget, DynBuild, IndexBuild};
use crate::views::{Folded, ViewStep};
use read_model::indices::ensure_tenant_aliases;

/// The audit log in Elasticsearch.
#[derive(Debug, Clone, Copy)]
pub struct Audit;

impl Projection for Audit {
    /// Every aggregate's events.
    const ABOUT: About = About::new(
        "audit",
        &AGGREGATE_NAMES,
        Storage::Index(read_model::audit::INDEX),
        Shape::EveryEvent,
    );

    async fn apply(
        &self,
        sinks: &Sinks,
        batch: &[EventEnvelope],
    ) -> Result<Rejected, ProjectionError> {
        let alias = sinks.targets.of(self);
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

    async fn held(&self, sinks: &Sinks, tenant: &TenantId) -> Result<Vec<Held>, ProjectionError> {
        streams::held_documents(sinks, self, tenant, "stream_version", &["global_position"]).await
    }

    fn builder(&self, target: BuildTarget) -> Box<dyn DynBuild> {
        Box::new(AuditBuild {
            index: target.index_build(),
            undecodable_events: 0,
        })
    }

    /// The facts stay (who did what, when); what the events said goes.
    async fn forget(
        &self,
        sinks: &Sinks,
        tenant: &TenantId,
        subject: &StreamId,
    ) -> Result<u64, ProjectionError> {
        let index = sinks.targets.of(self);
        let documents = streams::subject_documents(&sinks.es, index, tenant, subject).await?;
        Ok(streams::redact_payloads(&sinks.es, &documents).await?)
    }
}

/// A rebuild: one document per event, as the log is read.
struct AuditBuild {
    index: IndexBuild,
    undecodable_events: u64,
}

impl Build for AuditBuild {
    async fn feed(
        &mut self,
        envelope: &EventEnvelope,
        _step: Option<&ViewStep<'_>>,
    ) -> Result<(), ReplayError> {
        if Audit.check(envelope).is_ok() {
            let (action, document) = document(&self.index.index, envelope);
            self.index.push(action, document).await?;
        } else {
            self.undecodable_events += 1;
        }
        Ok(())
    }

    async fn finish(&mut self, _folded: &Folded) -> Result<BuildOutcome, ReplayError> {
        let mut outcome = self.index.finish().await?;
        outcome.undecodable_events = self.undecodable_events;
        Ok(outcome)
    }

    fn written_ids(&self) -> Option<&HashSet<String>> {
        self.index.written_ids()
    }
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
