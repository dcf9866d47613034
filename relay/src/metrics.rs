//! The relay's metrics and health, served on its metrics port.
//!
//! Lag is measured from the database, not from this process's memory, so a standby
//! reports the active relay's lag too: every event in the store after the checkpoint, and
//! the age of the oldest of them.
//!
//! Health tells the truth: the active relay is not ok when events wait and its checkpoint
//! has not moved for [`STALL_AFTER`] (stuck, or Kafka away), when a page handed to Kafka is
//! unacknowledged for that long, or when the lag cannot be measured (the store away).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service::ops_server::{Health, Observed};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use event_store::LogPosition;

use crate::checkpoint;

const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// How long events may wait, or a page go unacknowledged, before the relay reports itself
/// not ok.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct RelayMetrics {
    registry: Registry,
    published: Counter,
    publish_failures: Counter,
    oversized: Counter,
    leader: Gauge,
    checkpoint_position: Gauge,
    lag_events: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    oldest_unacked_seconds: Gauge<f64, AtomicU64>,
    is_leader: AtomicBool,
    /// What health is computed from, kept as instants (gauges hold numbers).
    progress: Mutex<Progress>,
    stall_after: Duration,
}

#[derive(Debug)]
struct Progress {
    /// When the checkpoint last moved (or the relay became active).
    checkpoint_moved: Instant,
    /// When the oldest page now with Kafka was handed over.
    oldest_unacked: Option<Instant>,
    /// Whether the last lag measurement worked, and how many events waited then.
    measured: bool,
    waiting: i64,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayMetrics {
    /// Metrics whose health calls the relay stuck after `stall_after` without progress.
    pub fn with_stall_after(stall_after: Duration) -> Self {
        Self {
            stall_after,
            ..Self::new()
        }
    }

    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("chronicle_relay"),
            published: Counter::default(),
            publish_failures: Counter::default(),
            oversized: Counter::default(),
            leader: Gauge::default(),
            checkpoint_position: Gauge::default(),
            lag_events: Gauge::default(),
            lag_seconds: Gauge::default(),
            oldest_unacked_seconds: Gauge::default(),
            is_leader: AtomicBool::new(false),
            progress: Mutex::new(Progress {
                checkpoint_moved: Instant::now(),
                oldest_unacked: None,
                measured: false,
                waiting: 0,
            }),
            stall_after: STALL_AFTER,
        };
        let registry = &mut metrics.registry;
        registry.register(
            "published_events",
            "Events Kafka acknowledged from this instance",
            metrics.published.clone(),
        );
        registry.register(
            "publish_failures",
            "Batches that failed and were retried from the checkpoint",
            metrics.publish_failures.clone(),
        );
        registry.register(
            "oversized_events",
            "Events too large for Kafka, published as a reference record (ce_dataref) to read from the store",
            metrics.oversized.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance is the active relay",
            metrics.leader.clone(),
        );
        registry.register(
            "checkpoint_position",
            "Global position of the last published event",
            metrics.checkpoint_position.clone(),
        );
        registry.register(
            "lag_events",
            "Events in the store not yet published",
            metrics.lag_events.clone(),
        );
        registry.register(
            "oldest_unacknowledged_seconds",
            "How long the oldest page handed to Kafka has waited for its acknowledgement",
            metrics.oldest_unacked_seconds.clone(),
        );
        registry.register(
            "lag_seconds",
            "Age of the oldest event not yet published",
            metrics.lag_seconds.clone(),
        );
        metrics
    }

    pub fn set_leader(&self, leader: bool) {
        self.is_leader.store(leader, Ordering::Relaxed);
        self.leader.set(i64::from(leader));
        let mut progress = self.progress();
        progress.checkpoint_moved = Instant::now();
        progress.oldest_unacked = None;
    }

    pub fn published(&self, events: usize, checkpoint: LogPosition) {
        self.published.inc_by(events as u64);
        self.checkpoint_position
            .set(i64::try_from(checkpoint.global_position).unwrap_or(i64::MAX));
        self.progress().checkpoint_moved = Instant::now();
    }

    /// The oldest page with Kafka was handed over at `since` (`None`: nothing is out).
    pub fn unacknowledged_since(&self, since: Option<Instant>) {
        self.progress().oldest_unacked = since;
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where a publishing session starts.
    pub fn checkpoint_loaded(&self, checkpoint: LogPosition) {
        self.checkpoint_position
            .set(i64::try_from(checkpoint.global_position).unwrap_or(i64::MAX));
    }

    pub fn publish_failed(&self) {
        self.publish_failures.inc();
    }

    pub fn oversized(&self) {
        self.oversized.inc();
    }
}

impl Observed for RelayMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Which role this instance plays, and whether it keeps up (see the module).
    fn health(&self) -> Health {
        let active = self.is_leader.load(Ordering::Relaxed);
        let progress = self.progress();
        let stalled_for = progress.checkpoint_moved.elapsed();
        let unacked_for = progress.oldest_unacked.map(|since| since.elapsed());
        let mut problems = Vec::new();
        if !progress.measured {
            problems.push("the store cannot be reached to measure the lag".to_owned());
        }
        if active && progress.waiting > 0 && stalled_for > self.stall_after {
            problems.push(format!(
                "{} events wait and the checkpoint has not moved for {} s",
                progress.waiting,
                stalled_for.as_secs()
            ));
        }
        if active && unacked_for.is_some_and(|age| age > self.stall_after) {
            problems.push(format!(
                "a page handed to Kafka is unacknowledged for {} s",
                unacked_for.unwrap_or_default().as_secs()
            ));
        }
        Health {
            ok: problems.is_empty(),
            body: serde_json::json!({
                "status": if problems.is_empty() { "ok" } else { "failing" },
                "role": if active { "active" } else { "standby" },
                "lag_events": self.lag_events.get(),
                "lag_seconds": self.lag_seconds.get(),
                "problems": problems,
            }),
        }
    }
}

/// Refreshes the lag gauges every [`LAG_INTERVAL`] until shutdown.
pub async fn track_lag(
    pool: PgPool,
    relay_name: String,
    metrics: Arc<RelayMetrics>,
    shutdown: CancellationToken,
) {
    loop {
        let measured = refresh_lag(&pool, &relay_name, &metrics).await;
        if let Err(error) = &measured {
            tracing::warn!(%error, "could not measure the lag");
        }
        metrics.progress().measured = measured.is_ok();
        let unacked = metrics
            .progress()
            .oldest_unacked
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        metrics.oldest_unacked_seconds.set(unacked);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LAG_INTERVAL) => {}
        }
    }
}

async fn refresh_lag(
    pool: &PgPool,
    relay_name: &str,
    metrics: &RelayMetrics,
) -> Result<(), sqlx::Error> {
    let checkpoint = checkpoint::load(pool, relay_name).await?;
    // Every event after the checkpoint, settled or not: the store's head, not Kafka's.
    let backlog = sqlx::query!(
        r#"SELECT count(*) AS "events!", min(recorded_at) AS oldest_recorded_at
           FROM events
           WHERE (transaction_id, global_position) > ($1::text::xid8, $2)"#,
        checkpoint.transaction_id.to_string(),
        i64::try_from(checkpoint.global_position).unwrap_or(i64::MAX),
    )
    .fetch_one(pool)
    .await?;
    metrics.lag_events.set(backlog.events);
    metrics.progress().waiting = backlog.events;
    let age = backlog.oldest_recorded_at.map_or(0.0, |oldest| {
        (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics.lag_seconds.set(age);
    Ok(())
}
