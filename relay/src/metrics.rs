//! The relay's metrics and health, served on its metrics port.
//!
//! Lag is measured from the database, not from this process's memory, so a standby
//! reports the active relay's lag too: events after the checkpoint, and the age of the
//! oldest of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service::ops_server::{Health, Observed};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use event_store::LogPosition;

use crate::checkpoint;

const LAG_INTERVAL: Duration = Duration::from_secs(2);

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
    is_leader: AtomicBool,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayMetrics {
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
            is_leader: AtomicBool::new(false),
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
            "lag_seconds",
            "Age of the oldest event not yet published",
            metrics.lag_seconds.clone(),
        );
        metrics
    }

    pub fn set_leader(&self, leader: bool) {
        self.is_leader.store(leader, Ordering::Relaxed);
        self.leader.set(i64::from(leader));
    }

    pub fn published(&self, events: usize, checkpoint: LogPosition) {
        self.published.inc_by(events as u64);
        self.checkpoint_position
            .set(i64::try_from(checkpoint.global_position).unwrap_or(i64::MAX));
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

    /// Alive, and which role this instance plays.
    fn health(&self) -> Health {
        let role = if self.is_leader.load(Ordering::Relaxed) {
            "active"
        } else {
            "standby"
        };
        Health {
            ok: true,
            body: serde_json::json!({ "status": "ok", "role": role }),
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
        if let Err(error) = refresh_lag(&pool, &relay_name, &metrics).await {
            tracing::debug!(%error, "could not measure lag");
        }
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
    let backlog = sqlx::query!(
        r#"SELECT events AS "events!", oldest_recorded_at
           FROM global_log_backlog($1::text::xid8, $2)"#,
        checkpoint.transaction_id.to_string(),
        i64::try_from(checkpoint.global_position).unwrap_or(i64::MAX),
    )
    .fetch_one(pool)
    .await?;
    metrics.lag_events.set(backlog.events);
    let age = backlog.oldest_recorded_at.map_or(0.0, |oldest| {
        (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics.lag_seconds.set(age);
    Ok(())
}
