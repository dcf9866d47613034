//! Folding the log into documents. A rebuild hands every event read, in log order, to the
//! [`Build`] of each projection being rebuilt (each projection's own, from
//! [`crate::projections::Projection::builder`]). Customer streams are folded once, event by
//! event, into their current views ([`Folded`]), shared by every build that reads them;
//! builds write their documents as the log is read or, for latest-state projections, once
//! it has been read to the end.

use std::collections::HashSet;
use std::future::Future;

use event_store::TenantId;
use futures_util::future::BoxFuture;
use schemas::EventEnvelope;
use serde_json::Value;
use sqlx::PgPool;

use super::ReplayError;
use super::writers::{BulkOutcome, BulkWriter};
use crate::projections::ProjectionRef;
use crate::views::{Folded, ViewStep};
use read_model::es::{Es, EsError};

/// One projection being rebuilt: fed every event of the log (or of one tenant), then
/// finished. Each projection writes its own with plain `async fn`s; the rebuild holds them
/// as [`DynBuild`]s (implemented once for every `Build`).
pub trait Build: Send {
    /// Whether it reads the customer views the rebuild folds (once, for every build).
    fn reads_views(&self) -> bool {
        false
    }

    /// One event, in log order; `step`: the customer view it took from and to, when it
    /// folded into one (and [`Build::reads_views`]).
    /// (By default nothing: a latest-state build writes once the log is read.)
    fn feed(
        &mut self,
        envelope: &EventEnvelope,
        step: Option<&ViewStep<'_>>,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send {
        let _ = (envelope, step);
        async { Ok(()) }
    }

    /// After the last event: writes what is left, waits for every write, and says what it
    /// came to. `folded`: every customer stream's last view.
    fn finish(
        &mut self,
        folded: &Folded,
    ) -> impl Future<Output = Result<BuildOutcome, ReplayError>> + Send;

    /// The ids of the documents written, when repairing a tenant in place (its other
    /// documents are strays to remove).
    fn written_ids(&self) -> Option<&HashSet<String>> {
        None
    }
}

/// A [`Build`] behind a pointer.
pub trait DynBuild: Send {
    fn reads_views(&self) -> bool;

    fn feed<'a>(
        &'a mut self,
        envelope: &'a EventEnvelope,
        step: Option<&'a ViewStep<'a>>,
    ) -> BoxFuture<'a, Result<(), ReplayError>>;

    fn finish<'a>(
        &'a mut self,
        folded: &'a Folded,
    ) -> BoxFuture<'a, Result<BuildOutcome, ReplayError>>;

    fn written_ids(&self) -> Option<&HashSet<String>>;
}

impl<B: Build> DynBuild for B {
    fn reads_views(&self) -> bool {
        Build::reads_views(self)
    }

    fn feed<'a>(
        &'a mut self,
        envelope: &'a EventEnvelope,
        step: Option<&'a ViewStep<'a>>,
    ) -> BoxFuture<'a, Result<(), ReplayError>> {
        Box::pin(Build::feed(self, envelope, step))
    }

    fn finish<'a>(
        &'a mut self,
        folded: &'a Folded,
    ) -> BoxFuture<'a, Result<BuildOutcome, ReplayError>> {
        Box::pin(Build::finish(self, folded))
    }

    fn written_ids(&self) -> Option<&HashSet<String>> {
        Build::written_ids(self)
    }
}

/// What a build writes into and how.
#[derive(Debug, Clone)]
pub struct BuildTarget {
    /// The table or index written: a new generation's, or the live one in place.
    pub name: String,
    /// Repairing this one tenant in place: the same versions overwrite, and the tenant's
    /// rows are replaced.
    pub tenant: Option<TenantId>,
    /// Read and fold, count, write nothing.
    pub dry_run: bool,
    pub es: Es,
    pub bulk_docs: usize,
    /// The owner role, for tables (`COPY`, in-place replacement).
    pub owner: Option<PgPool>,
}

impl BuildTarget {
    /// The owner role's pool (tables are built by the owner).
    pub fn owner(&self) -> &PgPool {
        self.owner
            .as_ref()
            .expect("a table is built through the owner role")
    }

    /// An index build: its bulk writer and version type.
    pub fn index_build(&self) -> IndexBuild {
        IndexBuild {
            index: self.name.clone(),
            writer: BulkWriter::new(
                self.es.clone(),
                self.bulk_docs,
                !self.dry_run,
                self.tenant.is_some(),
            ),
            version_type: if self.tenant.is_some() {
                "external_gte"
            } else {
                "external"
            },
        }
    }
}

/// An Elasticsearch projection being built: the index written and its writer.
#[derive(Debug)]
pub struct IndexBuild {
    pub index: String,
    writer: BulkWriter,
    /// `external_gte` when rebuilding in place (same versions overwrite), else `external`.
    version_type: &'static str,
}

impl IndexBuild {
    /// Queues one document with its `index` action, versioned for this build.
    pub async fn push(&mut self, mut action: Value, document: Value) -> Result<(), EsError> {
        action["index"]["version_type"] = Value::from(self.version_type);
        self.writer.push(action, document).await
    }

    /// Sends what is queued and waits for every request.
    pub async fn finish(&mut self) -> Result<BuildOutcome, EsError> {
        Ok(self.writer.finish().await?.into())
    }

    pub fn written_ids(&self) -> Option<&HashSet<String>> {
        self.writer.ids()
    }
}

/// What a build came to.
#[derive(Debug, Default, Clone)]
pub struct BuildOutcome {
    /// Rows or documents written (or, in a dry run, that would be).
    pub written: u64,
    /// Refused by Elasticsearch for the document itself (mapping, size).
    pub refused: u64,
    pub first_refusal: Option<String>,
    /// Events it could not use (they do not decode).
    pub undecodable_events: u64,
}

impl From<BulkOutcome> for BuildOutcome {
    fn from(outcome: BulkOutcome) -> Self {
        Self {
            written: outcome.written,
            refused: outcome.refused,
            first_refusal: outcome.first_refusal,
            undecodable_events: 0,
        }
    }
}

/// The builds of one rebuild, and the customer fold they share.
pub struct Builders {
    builds: Vec<(ProjectionRef, Box<dyn DynBuild>)>,
    reads_views: bool,
    /// Every customer stream's current view, and the streams that do not decode (a
    /// projection skips them whole, as the live projector parks them).
    pub folded: Folded,
}

impl std::fmt::Debug for Builders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builders")
            .field(
                "builds",
                &self
                    .builds
                    .iter()
                    .map(|(p, _)| p.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Builders {
    /// Each projection's build, into its target.
    pub fn new(builds: impl IntoIterator<Item = (ProjectionRef, BuildTarget)>) -> Self {
        let builds: Vec<(ProjectionRef, Box<dyn DynBuild>)> = builds
            .into_iter()
            .map(|(projection, target)| (projection, projection.builder(target)))
            .collect();
        Self {
            reads_views: builds.iter().any(|(_, build)| build.reads_views()),
            builds,
            folded: Folded::default(),
        }
    }

    /// Feeds events, in log order (each stream's in version order).
    pub async fn feed(&mut self, events: &[EventEnvelope]) -> Result<(), ReplayError> {
        for envelope in events {
            let next = if self.reads_views {
                self.folded.next(envelope)
            } else {
                None
            };
            let step = next.as_ref().map(|next| ViewStep {
                previous: self.folded.get(&envelope.stream_id),
                next,
            });
            for (_, build) in &mut self.builds {
                build.feed(envelope, step.as_ref()).await?;
            }
            if let Some(next) = next {
                self.folded.settle(envelope.stream_id.clone(), next);
            }
        }
        Ok(())
    }

    /// After the last event: every build finishes. Returns the outcome per projection.
    pub async fn finish(&mut self) -> Result<Vec<(ProjectionRef, BuildOutcome)>, ReplayError> {
        let mut outcomes = Vec::with_capacity(self.builds.len());
        for (projection, build) in &mut self.builds {
            outcomes.push((*projection, build.finish(&self.folded).await?));
        }
        Ok(outcomes)
    }

    /// The builds, for what they wrote.
    pub fn builds(&self) -> impl Iterator<Item = (ProjectionRef, &dyn DynBuild)> {
        self.builds
            .iter()
            .map(|(projection, build)| (*projection, build.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use std::collections::BTreeMap;

    use schemas::{
        CustomerEvent, CustomerName, CustomerRegistered, DomainEvent, EmailAddress, EventMetadata,
        StreamId, Tags, TenantId,
    };
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

    /// A dry run's target: documents are counted, nothing is sent.
    fn counting(es: &Es) -> BuildTarget {
        BuildTarget {
            name: "unused".to_owned(),
            tenant: None,
            dry_run: true,
            es: es.clone(),
            bulk_docs: 2,
            owner: None,
        }
    }

    #[tokio::test]
    async fn folds_both_archive_versions_and_skips_streams_that_do_not_decode() {
        let es = Es::new("http://127.0.0.1:1").unwrap();
        let mut builders = Builders::new(
            crate::projections::registry::ALL
                .iter()
                .map(|&projection| (projection, counting(&es))),
        );

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

        let views = builders.folded.views();
        assert_eq!(views.len(), 2, "the poisoned stream has no view");
        assert!(views.iter().all(|v| v.archived && v.version == 2));
        let reason = &builders.folded.undecodable[&poisoned];
        assert!(
            reason.starts_with("version 2 (CustomerTeleported v1)"),
            "{reason}"
        );
        let outcomes: BTreeMap<&str, BuildOutcome> = builders
            .finish()
            .await
            .unwrap()
            .into_iter()
            .map(|(p, o)| (p.name(), o))
            .collect();
        assert_eq!(
            outcomes["audit"].undecodable_events, 1,
            "audit skips only the unknown event"
        );
        let outcomes: BTreeMap<&str, u64> = outcomes
            .into_iter()
            .map(|(name, outcome)| (name, outcome.written))
            .collect();
        assert_eq!(outcomes["customers"], 2, "the poisoned stream has no row");
        assert_eq!(outcomes["search"], 2);
        assert_eq!(
            outcomes["history"], 5,
            "v1 and v2 streams whole, the poisoned one's first"
        );
        assert_eq!(outcomes["audit"], 6);
    }
}
