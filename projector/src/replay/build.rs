//! Folding the log into documents: every event read is handed to the builder of each
//! projection being rebuilt. Customer streams are folded once, event by event, into their
//! current views (shared by the customers, search and history builders); the history and
//! audit documents are written as the log is read, the customers and search documents
//! (latest state only) once it has been read to the end.

use std::collections::{BTreeMap, HashMap};

use schemas::{CustomerEvent, DomainEvent, EventEnvelope, StreamId};
use serde_json::Value;

use super::writers::{BulkOutcome, BulkWriter};
use crate::es::EsError;
use crate::projections::{Projection, audit, history, search};
use crate::views::{self, CustomerView};

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
    pub search: Option<EsBuild>,
    pub history: Option<EsBuild>,
    pub audit: Option<EsBuild>,
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
            search: None,
            history: None,
            audit: None,
            customers: false,
            version_type: if in_place { "external_gte" } else { "external" },
        }
    }

    fn folds_customers(&self) -> bool {
        self.customers || self.search.is_some() || self.history.is_some()
    }

    /// Feeds events, in log order (each stream's in version order).
    pub async fn feed(&mut self, events: &[EventEnvelope]) -> Result<(), EsError> {
        for envelope in events {
            if let Some(audit_build) = &mut self.audit {
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
        if let Some(history_build) = &mut self.history {
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
        if let Some(search_build) = &mut self.search {
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
        for (projection, build) in [
            (Projection::Search, &mut self.search),
            (Projection::History, &mut self.history),
            (Projection::Audit, &mut self.audit),
        ] {
            if let Some(build) = build {
                outcomes.push((projection, build.writer.finish().await?));
            }
        }
        Ok(outcomes)
    }

    /// The folded customers (for the PostgreSQL read model).
    pub fn views(&self) -> Vec<&CustomerView> {
        self.views.values().collect()
    }

    pub fn views_len(&self) -> usize {
        self.views.len()
    }
}
