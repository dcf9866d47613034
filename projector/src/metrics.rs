//! Per-projection metrics and health, on the projector's metrics port: records projected,
//! records parked in the dead-letter topic, and lag.
//!
//! Lag is counted from the store's head, not from what this member happens to hold: the
//! records on every partition of the projection's topics not yet committed by its consumer
//! group (whoever holds them), plus the events in the store the relay has not published
//! yet. A dead member's partitions, an empty group or a stuck relay all show as lag.
//!
//! Health tells the truth, per projection: not ok when the lag cannot be measured, when
//! this member has had no partitions for [`UNASSIGNED_AFTER`], when events wait and nothing
//! was projected for [`STALL_AFTER`], or when a batch has been failing for that long.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service::ops_server::{Health, Observed};

use crate::projections::{ProjectionRef, registry};

/// How long events may wait with nothing projected, or a batch keep failing, before the
/// projection reports itself not ok (by default; `CHRONICLE_PROJECTOR_STALL_AFTER_MS`).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// How long a member may hold no partition before it reports itself not ok (and its
/// consumer is replaced).
pub const UNASSIGNED_AFTER: Duration = Duration::from_secs(30);

/// How old the last lag measurement may be before the projection reports itself not ok.
const MEASURED_WITHIN: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabel {
    pub projection: String,
}

#[derive(Debug)]
pub struct ProjectorMetrics {
    registry: Registry,
    pub projected: Family<ProjectionLabel, Counter>,
    pub dead_lettered: Family<ProjectionLabel, Counter>,
    pub lag_events: Family<ProjectionLabel, Gauge>,
    pub lag_seconds: Family<ProjectionLabel, Gauge<f64, AtomicU64>>,
    pub assigned_partitions: Family<ProjectionLabel, Gauge>,
    pub consumer_restarts: Family<ProjectionLabel, Counter>,
    states: Mutex<HashMap<ProjectionRef, State>>,
    stall_after: Duration,
}

/// What a projection's health is computed from.
#[derive(Debug, Clone, Copy)]
struct State {
    /// When a batch was last projected (or the projection started).
    progressed: Instant,
    /// Since when the current batch keeps failing.
    failing_since: Option<Instant>,
    /// Since when this member holds no partition.
    unassigned_since: Option<Instant>,
    /// When the lag was last measured.
    measured: Option<Instant>,
    waiting: i64,
    /// Of `waiting`, the records already in Kafka (the rest the relay has not published).
    in_kafka: i64,
}

impl State {
    /// The last measurement is missing or too old to go by.
    fn unmeasured(&self) -> bool {
        self.measured
            .is_none_or(|at| at.elapsed() > MEASURED_WITHIN)
    }

    /// How long this member has held no partition, once that is too long.
    fn unassigned_too_long(&self) -> Option<Duration> {
        self.unassigned_since
            .map(|since| since.elapsed())
            .filter(|held_none| *held_none > UNASSIGNED_AFTER)
    }

    /// How long nothing was projected, once that is longer than `stall_after`.
    fn stalled_for(&self, stall_after: Duration) -> Option<Duration> {
        Some(self.progressed.elapsed()).filter(|quiet| *quiet > stall_after)
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            progressed: Instant::now(),
            failing_since: None,
            unassigned_since: Some(Instant::now()),
            measured: None,
            waiting: 0,
            in_kafka: 0,
        }
    }
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chronicle_projector");
        let metrics = Self {
            projected: Family::default(),
            dead_lettered: Family::default(),
            lag_events: Family::default(),
            lag_seconds: Family::default(),
            assigned_partitions: Family::default(),
            consumer_restarts: Family::default(),
            registry: Registry::default(),
            states: Mutex::default(),
            stall_after: STALL_AFTER,
        };
        registry.register(
            "projected_records",
            "Records written by each projection",
            metrics.projected.clone(),
        );
        registry.register(
            "dead_lettered_records",
            "Records parked in the dead-letter topic",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "lag_events",
            "Events not yet projected: uncommitted records on every partition of the projection's topics, and events the relay has not published",
            metrics.lag_events.clone(),
        );
        registry.register(
            "lag_seconds",
            "How old the newest projected event is while records wait",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions this member holds for the projection",
            metrics.assigned_partitions.clone(),
        );
        registry.register(
            "consumer_restarts",
            "Kafka consumers replaced because they stayed stuck (see the projector's log)",
            metrics.consumer_restarts.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl ProjectorMetrics {
    /// Metrics whose health calls a projection stuck after `stall_after` without progress.
    pub fn with_stall_after(stall_after: Duration) -> Self {
        Self {
            stall_after,
            ..Self::default()
        }
    }

    pub fn label(projection: &str) -> ProjectionLabel {
        ProjectionLabel {
            projection: projection.to_owned(),
        }
    }

    fn states(&self) -> MutexGuard<'_, HashMap<ProjectionRef, State>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch of `projection` was projected.
    pub fn progressed(&self, projection: ProjectionRef) {
        let mut states = self.states();
        let state = states.entry(projection).or_default();
        state.progressed = Instant::now();
        state.failing_since = None;
    }

    /// A batch of `projection` failed and is being retried.
    pub fn failing(&self, projection: ProjectionRef) {
        self.states()
            .entry(projection)
            .or_default()
            .failing_since
            .get_or_insert_with(Instant::now);
    }

    /// The lag was measured: `in_kafka` records not committed by the group and
    /// `unpublished` events not yet in Kafka; `assigned` partitions held here.
    pub fn measured(
        &self,
        projection: ProjectionRef,
        in_kafka: i64,
        unpublished: i64,
        assigned: usize,
    ) {
        let waiting = in_kafka + unpublished;
        let label = Self::label(projection.name());
        self.lag_events.get_or_create(&label).set(waiting);
        self.assigned_partitions
            .get_or_create(&label)
            .set(i64::try_from(assigned).unwrap_or(i64::MAX));
        if waiting == 0 {
            self.lag_seconds.get_or_create(&label).set(0.0);
        }
        let mut states = self.states();
        let state = states.entry(projection).or_default();
        state.measured = Some(Instant::now());
        state.waiting = waiting;
        state.in_kafka = in_kafka;
        if assigned > 0 {
            state.unassigned_since = None;
        } else {
            state.unassigned_since.get_or_insert_with(Instant::now);
        }
        // Nothing waiting is not a stall, however long it has been quiet.
        if waiting == 0 {
            state.progressed = Instant::now();
        }
    }

    /// Whether this member has held no partition of `projection` for too long (a new
    /// consumer should join instead).
    pub fn unassigned_too_long(&self, projection: ProjectionRef) -> bool {
        self.states()
            .get(&projection)
            .is_some_and(|state| state.unassigned_too_long().is_some())
    }

    /// What is wrong with `projection` that a new Kafka consumer could mend: the lag cannot
    /// be measured, no partition comes, or records wait and none arrive. `None` while a
    /// batch is failing: then the store or an index is away, not the consumer.
    pub fn consumer_trouble(&self, projection: ProjectionRef) -> Option<String> {
        let state = self.states().get(&projection).copied().unwrap_or_default();
        if state.failing_since.is_some() {
            return None;
        }
        let mut trouble = Vec::new();
        if state.unmeasured() {
            trouble.push("the lag cannot be measured".to_owned());
        }
        if let Some(held_none) = state.unassigned_too_long() {
            trouble.push(format!("no partition for {} s", held_none.as_secs()));
        }
        // Records the relay has not published are the relay's trouble, not the consumer's.
        if let Some(quiet) = state.stalled_for(self.stall_after)
            && state.in_kafka > 0
        {
            trouble.push(format!(
                "{} records wait in Kafka and none came for {} s",
                state.in_kafka,
                quiet.as_secs()
            ));
        }
        (!trouble.is_empty()).then(|| trouble.join("; "))
    }

    /// `projection` has a new consumer: it is judged afresh, as at start.
    pub fn new_consumer(&self, projection: ProjectionRef) {
        self.states().insert(projection, State::default());
        self.consumer_restarts
            .get_or_create(&Self::label(projection.name()))
            .inc();
    }

    /// What is wrong with `projection`, if anything.
    fn problems(&self, projection: ProjectionRef) -> Vec<String> {
        let state = self.states().get(&projection).copied().unwrap_or_default();
        let mut problems = Vec::new();
        if state.unmeasured() {
            problems.push("the lag cannot be measured (Kafka or the store away)".to_owned());
        }
        if let Some(held_none) = state.unassigned_too_long() {
            problems.push(format!(
                "no partition assigned for {} s",
                held_none.as_secs()
            ));
        }
        if let Some(quiet) = state.stalled_for(self.stall_after)
            && state.waiting > 0
        {
            problems.push(format!(
                "{} events wait and nothing was projected for {} s",
                state.waiting,
                quiet.as_secs()
            ));
        }
        if let Some(since) = state.failing_since
            && since.elapsed() > self.stall_after
        {
            problems.push(format!(
                "a batch has failed for {} s (its store or index away?)",
                since.elapsed().as_secs()
            ));
        }
        problems
    }
}

impl Observed for ProjectorMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Each projection's lag and problems; ok only when none has any.
    fn health(&self) -> Health {
        let mut ok = true;
        let projections: serde_json::Map<String, serde_json::Value> = registry::ALL
            .iter()
            .filter(|p| self.states().contains_key(*p))
            .map(|p| {
                let label = Self::label(p.name());
                let problems = self.problems(*p);
                ok &= problems.is_empty();
                (
                    p.name().to_owned(),
                    serde_json::json!({
                        "status": if problems.is_empty() { "ok" } else { "failing" },
                        "lag_events": self.lag_events.get_or_create(&label).get(),
                        "lag_seconds": self.lag_seconds.get_or_create(&label).get(),
                        "assigned_partitions": self.assigned_partitions.get_or_create(&label).get(),
                        "problems": problems,
                    }),
                )
            })
            .collect();
        Health {
            ok,
            body: serde_json::json!({
                "status": if ok { "ok" } else { "failing" },
                "projections": projections,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_stuck_in_kafka_call_for_a_new_consumer() {
        let metrics = ProjectorMetrics::with_stall_after(Duration::from_millis(10));
        let projection = registry::named("search").unwrap();
        metrics.measured(projection, 0, 0, 3);
        assert_eq!(metrics.consumer_trouble(projection), None, "nothing waits");

        // Events the relay has not published wait: the relay's trouble, not the consumer's,
        // though health reports the stall.
        metrics.measured(projection, 0, 40, 3);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(metrics.consumer_trouble(projection), None);
        assert!(!metrics.problems(projection).is_empty());

        // Records in Kafka and none arrive: the consumer's.
        metrics.measured(projection, 25, 40, 3);
        let trouble = metrics.consumer_trouble(projection).expect("trouble");
        assert!(trouble.contains("25 records wait in Kafka"), "{trouble}");

        // A batch that keeps failing is the store's or an index's trouble.
        metrics.failing(projection);
        assert_eq!(metrics.consumer_trouble(projection), None);

        // A new consumer is judged afresh (unmeasured until its first measurement), and
        // counted.
        metrics.new_consumer(projection);
        assert_eq!(
            metrics.consumer_trouble(projection).as_deref(),
            Some("the lag cannot be measured")
        );
        metrics.measured(projection, 0, 0, 3);
        assert_eq!(metrics.consumer_trouble(projection), None);
        assert_eq!(
            metrics
                .consumer_restarts
                .get_or_create(&ProjectorMetrics::label("search"))
                .get(),
            1
        );
    }
}
