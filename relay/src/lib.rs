//! The relay: every event of the store to Kafka, in order per stream, never skipped,
//! never lost.
//!
//! # Layout
//! - [`config`]: [`RelayConfig`], from the environment.
//! - [`leadership`]: one active relay at a time, by a PostgreSQL advisory lock.
//! - [`checkpoint`]: the resume point, in PostgreSQL.
//! - [`cloudevents`]: how an event becomes a Kafka record: topic, key, value, headers.
//! - [`publisher`]: the idempotent producer; a batch counts once Kafka acknowledged all of it.
//! - [`topics`]: creating the topics the relay writes to.
//! - [`metrics`]: lag and throughput for Prometheus, and `/healthz`, on the metrics port.
//! - `testing` (feature `testing`): Kafka for tests: topics of a test's own, a consumer that
//!   reads them back, a broker of a test's own to stop and start.
//!
//! Delivery is at least once: the checkpoint advances only after Kafka acknowledged every
//! record up to it, so a crash or a delivery error re-publishes from the checkpoint. That
//! can repeat events (consumers are idempotent by stream version) but never skips one,
//! and a stream's events keep their order because they share a key, hence a partition,
//! and the idempotent producer neither reorders nor duplicates within a partition.

pub mod checkpoint;
pub mod cloudevents;
pub mod config;
pub mod leadership;
pub mod metrics;
pub mod publisher;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service::retry::Backoff;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::RelayConfig;

use event_store::{EventStore, EventStoreError, GlobalLogEvent};
use leadership::Leadership;
use metrics::RelayMetrics;
use publisher::Publisher;
use topics::Topics;

/// The channel the `events_appended` trigger notifies on commit.
const EVENTS_APPENDED: &str = "chronicle_events_appended";

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("configuration: {0}")]
    Config(#[from] Box<figment::Error>),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    EventStore(#[from] EventStoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("lost the relay lock: another instance may be publishing")]
    LostLeadership,
}

/// A relay, built and bound, ready to run.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    store: EventStore,
    metrics: Arc<RelayMetrics>,
    metrics_listener: TcpListener,
}

impl Relay {
    /// Connects to PostgreSQL and binds the metrics port; nothing is published yet.
    pub async fn build(config: RelayConfig) -> Result<Self, RelayError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(config.database_url.expose())
            .await?;
        let metrics_listener = TcpListener::bind(&config.metrics_addr).await?;
        Ok(Self {
            config,
            store: EventStore::new(pool),
            metrics: Arc::new(RelayMetrics::new()),
            metrics_listener,
        })
    }

    /// Where `/metrics` and `/healthz` are served (useful with port 0).
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Runs until `shutdown` is cancelled: waits to become the active relay, then
    /// publishes; if the lock is lost, goes back to waiting.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let Self {
            config,
            store,
            metrics,
            metrics_listener,
        } = self;
        let server = service::ops_server::spawn(metrics_listener, metrics.clone(), shutdown.clone());
        let lag = tokio::spawn(metrics::track_lag(
            store.pool().clone(),
            config.relay_name.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));

        // Every failure short of shutdown is survivable: stand down, back off, and
        // compete for the lock again, resuming from the checkpoint.
        let mut backoff = Backoff::new();
        while let Some(mut leadership) = Leadership::acquire(&config, &shutdown).await {
            metrics.set_leader(true);
            tracing::info!(relay = %config.relay_name, "this instance is the active relay");
            let outcome = lead(&config, &store, &metrics, &mut leadership, &shutdown).await;
            metrics.set_leader(false);
            drop(leadership);
            match outcome {
                Ok(()) => break,
                Err(RelayError::LostLeadership) => {
                    tracing::warn!("lost the relay lock; standing by")
                }
                Err(error) => {
                    tracing::error!(%error, "relay failed; standing by before retrying");
                    backoff.wait(&shutdown).await;
                }
            }
        }

        shutdown.cancel();
        let _ = lag.await;
        if let Ok(Err(error)) = server.await {
            tracing::warn!(%error, "metrics server ended with an error");
        }
        Ok(())
    }
}

/// Publishes from the checkpoint until shutdown or until the lock is lost.
async fn lead(
    config: &RelayConfig,
    store: &EventStore,
    metrics: &RelayMetrics,
    leadership: &mut Leadership,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let pool = store.pool();
    let mut checkpoint = checkpoint::load(pool, &config.relay_name).await?;
    tracing::info!(?checkpoint, "resuming from checkpoint");
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENTS_APPENDED).await?;

    let mut topics = Topics::new(config)?;
    if let Err(error) = topics.ensure_for(&[]).await {
        // Not fatal: Kafka may be away; every batch ensures its topics again first.
        tracing::warn!(%error, "could not create the topics at start-up; will retry");
    }
    let mut publisher = Publisher::new(config)?;
    let mut backoff = Backoff::new();

    while !shutdown.is_cancelled() {
        leadership.confirm().await?;

        let page = match store.read_global_log(checkpoint, config.batch_size).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "reading the global log failed; retrying");
                backoff.wait(shutdown).await;
                continue;
            }
        };
        if page.is_empty() {
            wait_for_events(&mut listener, config.idle_poll(), shutdown).await;
            continue;
        }

        let published = async {
            topics.ensure_for(&page).await?;
            publisher.publish(&page).await
        }
        .await;
        if let Err(error) = published {
            metrics.publish_failed();
            tracing::warn!(%error, batch = page.len(), "publishing failed; resuming from the checkpoint");
            // A producer that failed may hold undeliverable records; start afresh. Its
            // drop flushes, which blocks: not on a runtime worker.
            let failed = std::mem::replace(&mut publisher, Publisher::new(config)?);
            tokio::task::spawn_blocking(move || drop(failed));
            backoff.wait(shutdown).await;
            continue;
        }

        let last = last_position(&page);
        if let Err(error) = checkpoint::save(pool, &config.relay_name, last).await {
            // Published but not recorded: the page goes out again (duplicates, no loss).
            tracing::warn!(%error, "saving the checkpoint failed; the batch will be re-published");
            backoff.wait(shutdown).await;
            continue;
        }
        checkpoint = last;
        metrics.published(page.len(), last);
        backoff.reset();
    }
    Ok(())
}

fn last_position(page: &[GlobalLogEvent]) -> event_store::LogPosition {
    page.last()
        .expect("only non-empty pages are published")
        .position
}

/// Sleeps until an append is notified, `idle` passes, or shutdown.
async fn wait_for_events(listener: &mut PgListener, idle: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(idle) => {}
        notification = listener.recv() => {
            if let Err(error) = notification {
                tracing::warn!(%error, "listening for appends failed; polling");
                service::retry::pause(idle, shutdown).await;
            }
        }
    }
}
