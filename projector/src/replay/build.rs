//! Folding the log into documents: every event read is handed to the builder of each
//! projection being rebuilt. Customer streams are folded once, event by event, into their
//! current views (shared by the customers, search and history builders); the history and
//! audit documents are written as the log is read, the customers and search documents
//! (latest state only) once it has been read to the end.

use std::collections::{BTreeMap, HashMap};

use schemas::{CustomerEvent, DomainEvent, EventEnvelope, StreamId};
use serde_json::Value;

use super::writers::{BulkOutcome, BulkWriter};
use crate::projections::{Projection, audit, history, search};
use crate::views::{self, CustomerView};
use read_model::es::EsError;

/// The builders of one rebuild.
#[derive(Debug)]
pub struct Builders {
    /// Every customer stream's current view.
    views: HashMap<StreamId, CustomerView>,
    /// Streams with an event that does not decode (a projection skips them whole, as the
    /// live projector parks them), with the reason.
    pub undecodable: BTreeMap<StreamId, String>,
    /// Events of other aggregates the audit projection cannot decode, with the reason.
    pub undecodable_events: u64,
    /// The Elasticsearch projections being built (search, history, audit), each into its
    /// index.
    pub indices: BTreeMap<Projection, EsBuild>,
    /// Whether the PostgreSQL read model is rebuilt (it takes the views at the end).
    pub customers: bool,
    /// `external_gte` when rebuilding in place (same versions overwrite), else `external`.
    version_type: &'static str,
}

/// An Elasticsearch projection being built: the index written and its writer.
#[derive(Debug)]
pub struct EsBuild {
    pub index: String,
    pub writer: BulkWriter,
}

impl Builders {
    pub fn new(in_place: bool) -> Self {
        Self {
            views: HashMap::new(),
            undecodable: BTreeMap::new(),
            undecodable_events: 0,
            indices: BTreeMap::new(),
            customers: false,
            version_type: if in_place { "external_gte" } else { "external" },
        }
    }

    fn folds_customers(&self) -> bool {
        self.customers
            || self.indices.contains_key(&Projection::Search)
            || self.indices.contains_key(&Projection::History)
    }

    /// Feeds events, in log order (each stream's in version order).
    pub async fn feed(&mut self, events: &[EventEnvelope]) -> Result<(), EsError> {
        for envelope in events {
            if let Some(audit_build) = self.indices.get_mut(&Projection::Audit) {
                if Projection::Audit.check(envelope).is_ok() {
                    let (mut action, document) = audit::document(&audit_build.index, envelope);
                    action["index"]["version_type"] = Value::from(self.version_type);
                    audit_build.writer.push(action, document).await?;
                } else {
                    self.undecodable_events += 1;
                }
            }
            if envelope.stream_id.category() == CustomerEvent::AGGREGATE && self.folds_customers() {
                self.fold(envelope).await?;
            }
        }
        Ok(())
    }

    async fn fold(&mut self, envelope: &EventEnvelope) -> Result<(), EsError> {
        let stream = &envelope.stream_id;
        if self.undecodable.contains_key(stream) {
            return Ok(());
        }
        let previous = self.views.get(stream);
        let next = match views::step(previous, envelope) {
            Ok(Some(next)) => next,
            // An event that cannot apply (nothing before a registration): the live
            // projector's fold skips it the same way.
            Ok(None) => return Ok(()),
            Err(error) => {
                self.undecodable.insert(
                    stream.clone(),
                    format!(
                        "version {} ({} v{}): {error}",
                        envelope.stream_version, envelope.event_type, envelope.schema_version
                    ),
                );
                self.views.remove(stream);
                return Ok(());
            }
        };
        if let Some(history_build) = self.indices.get_mut(&Projection::History) {
            let entry = views::history_entry(previous, &next, envelope);
            let (mut action, document) = history::document(
                &history_build.index,
                envelope.tenant_id.as_str(),
                stream.as_str(),
                &entry,
            );
            action["index"]["version_type"] = Value::from(self.version_type);
            history_build.writer.push(action, document).await?;
        }
        self.views.insert(stream.clone(), next);
        Ok(())
    }

    /// After the last event: writes the search documents and waits for every write.
    /// Returns the outcome per Elasticsearch projection.
    pub async fn finish(&mut self) -> Result<Vec<(Projection, BulkOutcome)>, EsError> {
        if let Some(search_build) = self.indices.get_mut(&Projection::Search) {
            for view in self.views.values() {
                let mut action = search::action(&search_build.index, view);
                action["index"]["version_type"] = Value::from(self.version_type);
                search_build
                    .writer
                    .push(action, search::document(view))
                    .await?;
            }
        }
        let mut outcomes = Vec::new();
        for (projection, build) in &mut self.indices {
            outcomes.push((*projection, build.writer.finish().await?));
        }
        Ok(outcomes)
    }

    /// The folded customers (for the PostgreSQL read model).
    pub fn views(&self) -> Vec<&CustomerView> {
        self.views.values().collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use schemas::{CustomerName, CustomerRegistered, EmailAddress, EventMetadata, Tags, TenantId};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use read_model::es::Es;

    fn envelope(
        stream: &StreamId,
        version: u64,
        position: u64,
        (event_type, schema_version): (&str, u32),
        payload: Value,
    ) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            tenant_id: TenantId::parse("acme").unwrap(),
            stream_id: stream.clone(),
            stream_version: version,
            global_position: position,
            event_type: event_type.to_owned(),
            schema_version,
            recorded_at: Utc::now(),
            payload,
            metadata: EventMetadata {
                actor_id: Uuid::now_v7(),
                actor_name: "Test".to_owned(),
                request_id: "r".to_owned(),
                correlation_id: "c".to_owned(),
                causation_id: "c".to_owned(),
            },
        }
    }

    fn registration(name: &str) -> (&'static str, u32, Value) {
        let event = CustomerEvent::from(CustomerRegistered {
            name: CustomerName::parse(name).unwrap(),
            email: EmailAddress::parse("a@example.com").unwrap(),
            phone: None,
            address: None,
            tags: Tags::default(),
        });
        (
            event.event_type(),
            event.schema_version(),
            event.to_payload(),
        )
    }

    /// A dry run's builder: documents are counted, nothing is sent.
    fn counting(es: &Es) -> EsBuild {
        EsBuild {
            index: "unused".to_owned(),
            writer: BulkWriter::new(es.clone(), 2, false, false),
        }
    }

    #[tokio::test]
    async fn folds_both_archive_versions_and_skips_streams_that_do_not_decode() {
        let es = Es::new("http://127.0.0.1:1").unwrap();
        let mut builders = Builders::new(false);
        builders.customers = true;
        for projection in [Projection::Search, Projection::History, Projection::Audit] {
            builders.indices.insert(projection, counting(&es));
        }

        let (v1, v2, poisoned) = (
            StreamId::for_aggregate("customer", Uuid::now_v7()).unwrap(),
            StreamId::for_aggregate("customer", Uuid::now_v7()).unwrap(),
            StreamId::for_aggregate("customer", Uuid::now_v7()).unwrap(),
        );
        let (kind, version, payload) = registration("Vera");
        let mut log = vec![envelope(&v1, 1, 1, (kind, version), payload.clone())];
        log.push(envelope(&v2, 1, 2, (kind, version), payload.clone()));
        log.push(envelope(&poisoned, 1, 3, (kind, version), payload));
        // CustomerArchived as stored before v2 (no reason), and as v2.
        log.push(envelope(&v1, 2, 4, ("CustomerArchived", 1), json!({})));
        log.push(envelope(
            &v2,
            2,
            5,
            ("CustomerArchived", 2),
            json!({ "reason": "left" }),
        ));
        log.push(envelope(
            &poisoned,
            2,
            6,
            ("CustomerTeleported", 1),
            json!({}),
        ));
        log.push(envelope(
            &poisoned,
            3,
            7,
            ("CustomerArchived", 2),
            json!({ "reason": "x" }),
        ));
        builders.feed(&log).await.unwrap();

        let views = builders.views();
        assert_eq!(views.len(), 2, "the poisoned stream has no view");
        assert!(views.iter().all(|v| v.archived && v.version == 2));
        let reason = &builders.undecodable[&poisoned];
        assert!(
            reason.starts_with("version 2 (CustomerTeleported v1)"),
            "{reason}"
        );
        assert_eq!(
            builders.undecodable_events, 1,
            "audit skips only the unknown event"
        );

        let outcomes: BTreeMap<&str, u64> = builders
            .finish()
            .await
            .unwrap()
            .into_iter()
            .map(|(p, o)| (p.name(), o.written))
            .collect();
        assert_eq!(outcomes["search"], 2);
        assert_eq!(
            outcomes["history"], 5,
            "v1 and v2 streams whole, the poisoned one's first"
        );
        assert_eq!(outcomes["audit"], 6);
    }
}
