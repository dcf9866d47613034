//! The relay: every event of the store to Kafka, in order per stream, never skipped,
//! never lost.
//!
//! # Layout
//! - [`config`]: [`RelayConfig`], from the environment.
//! - [`leadership`]: one active relay at a time, by a PostgreSQL advisory lock.
//! - [`checkpoint`]: the resume point, in PostgreSQL.
//! - [`publisher`]: the idempotent producer; a batch counts once Kafka acknowledged all of it.
//! - [`topics`]: creating the topics the relay writes to, and their record limits.
//! - [`wakeup`]: polling while the log is busy, notified once it is idle.
//! - [`metrics`]: lag and throughput for Prometheus, and `/healthz`, on the metrics port.
//! - `testing` (feature `testing`): Kafka for tests: topics of a test's own, a consumer that
//!   reads them back, a broker of a test's own to stop and start.
//!
//! How an event becomes a Kafka record (topic, key, value, headers) is `kafka_wire`'s, the
//! crate below both the relay and the projector, which reads with it.
//!
//! Delivery is at least once: the checkpoint advances only after Kafka acknowledged every
//! record up to it, so a crash or a delivery error re-publishes from the checkpoint. That
//! can repeat events (consumers are idempotent by stream version) but never skips one,
//! and a stream's events keep their order because they share a key, hence a partition,
//! and the idempotent producer neither reorders nor duplicates within a partition.

pub mod checkpoint;
pub mod config;
pub mod leadership;
pub mod metrics;
pub mod publisher;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod wakeup;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use service::retry::Backoff;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::RelayConfig;

use event_store::{EventStore, EventStoreError, LogPosition, RawLogEvent};
use leadership::Leadership;
use metrics::RelayMetrics;
use publisher::{InFlight, PublishError, Publisher};
use topics::Topics;

/// The channel the `events_appended` trigger notifies on commit.
const EVENTS_APPENDED: &str = "chronicle_events_appended";

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("configuration: {0}")]
    Config(#[from] Box<figment::Error>),
    #[error("{0}")]
    DevelopmentSecret(#[from] service::dev_guard::DevelopmentSecret),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    EventStore(#[from] EventStoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("publishing: {0}")]
    Publish(#[from] PublishError),
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
        service::dev_guard::check_database_url(
            config.dev_mode,
            "CHRONICLE_RELAY_DATABASE_URL",
            config.database_url.expose(),
        )?;
        let pool = event_store::pool::options(4)
            .connect(config.database_url.expose())
            .await?;
        let metrics_listener = TcpListener::bind(&config.metrics_addr).await?;
        let stall_after = Duration::from_millis(config.stall_after_ms);
        Ok(Self {
            config,
            store: EventStore::new(pool),
            metrics: Arc::new(RelayMetrics::with_stall_after(stall_after)),
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
        let server =
            service::ops_server::spawn(metrics_listener, metrics.clone(), shutdown.clone());
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
///
/// Pipelined: up to `pages_in_flight` pages are with Kafka at once, the next page read
/// while earlier ones await their acknowledgements. The checkpoint still only moves over
/// pages Kafka acknowledged whole, oldest first, so a failure anywhere resumes from a
/// point before every record that might be missing.
async fn lead(
    config: &RelayConfig,
    store: &EventStore,
    metrics: &RelayMetrics,
    leadership: &mut Leadership,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let pool = store.pool();
    let mut topics = Topics::new(config)?;
    if let Err(error) = topics.ensure_for(&[]).await {
        // Not fatal: Kafka may be away; every page ensures its topics again first.
        tracing::warn!(%error, "could not create the topics at start-up; will retry");
    }
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        let checkpoint = checkpoint::load(pool, &config.relay_name).await?;
        tracing::info!(?checkpoint, "resuming from checkpoint");
        let publisher = Publisher::new(config)?;
        metrics.checkpoint_loaded(checkpoint);
        let session = Instant::now();
        let outcome = publish_from(
            config,
            store,
            metrics,
            leadership,
            &mut topics,
            &publisher,
            checkpoint,
            shutdown,
        )
        .await;
        // A session that ran a while made progress: the next failure starts the backoff over.
        if session.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        // A producer that failed may hold undeliverable records; start afresh. Its drop
        // flushes, which blocks: not on a runtime worker.
        tokio::task::spawn_blocking(move || drop(publisher));
        match outcome {
            Ok(()) => break,
            Err(RelayError::LostLeadership) => return Err(RelayError::LostLeadership),
            Err(error) => {
                metrics.publish_failed();
                if let RelayError::Publish(PublishError::TooLarge { topic, size }) = &error {
                    topics.lower_record_limit(topic, *size);
                }
                tracing::warn!(%error, "publishing failed; resuming from the checkpoint");
                backoff.wait(shutdown).await;
            }
        }
    }
    Ok(())
}

/// One producer's session: a reader task reads the log ahead from `checkpoint` while this
/// one publishes pages and checkpoints what is acknowledged (reading and encoding run on
/// both cores). Returns on shutdown, or with the error that ends the session.
#[allow(clippy::too_many_arguments)] // the session's parts, each its own concern
async fn publish_from(
    config: &RelayConfig,
    store: &EventStore,
    metrics: &RelayMetrics,
    leadership: &mut Leadership,
    topics: &mut Topics,
    publisher: &Publisher,
    checkpoint: LogPosition,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let pool = store.pool();
    let max_in_flight = config.pages_in_flight.max(1);
    let (pages_out, mut pages) = mpsc::channel(max_in_flight);
    let stop_reading = shutdown.child_token();
    let reader = tokio::spawn(read_ahead(
        config.clone(),
        store.clone(),
        checkpoint,
        pages_out,
        stop_reading.clone(),
    ));
    // Stops the reader however this session ends.
    let _stop_reader = stop_reading.drop_guard();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    loop {
        leadership.confirm().await?;
        let next = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            page = pages.recv(), if in_flight.len() < max_in_flight => Next::Page(page),
            acked = oldest_acknowledged(&mut in_flight), if !in_flight.is_empty() => Next::Acked(acked),
        };
        match next {
            Next::Page(Some(Ok(page))) => {
                topics.ensure_for(&page).await?;
                in_flight.push_back(publisher.send(&page, topics, metrics).await?);
                if in_flight.len() == 1 {
                    metrics.unacknowledged_since(Some(Instant::now()));
                }
            }
            Next::Page(Some(Err(error))) => return Err(error.into()),
            Next::Page(None) => {
                // The reader ended without an error: it was told to stop.
                let _ = reader.await;
                return Ok(());
            }
            Next::Acked(acked) => {
                acked?;
                let done = in_flight.pop_front().expect("a page was in flight");
                // Published but not recorded if this fails: the pages from the checkpoint
                // go out again (duplicates, no loss).
                checkpoint::save(pool, &config.relay_name, done.last).await?;
                metrics.published(done.events, done.last);
                metrics.unacknowledged_since(in_flight.front().map(|next| next.sent_at));
            }
        }
    }
}

/// What the session does next.
enum Next {
    Page(Option<Result<Vec<RawLogEvent>, EventStoreError>>),
    Acked(Result<(), PublishError>),
}

/// Waits for the acknowledgements of the oldest page in flight (cancel-safe).
async fn oldest_acknowledged(in_flight: &mut VecDeque<InFlight>) -> Result<(), PublishError> {
    match in_flight.front_mut() {
        Some(oldest) => oldest.acknowledged().await,
        None => std::future::pending().await,
    }
}

/// Reads the log from `from` onwards into `pages`: back to back while there is more, then
/// polling while the log is busy, then notified once it is idle (see [`wakeup`]). Ends when
/// `stop` is cancelled, the receiver is gone, or a read fails (the error is sent on).
async fn read_ahead(
    config: RelayConfig,
    store: EventStore,
    from: LogPosition,
    pages: mpsc::Sender<Result<Vec<RawLogEvent>, EventStoreError>>,
    stop: CancellationToken,
) {
    let pool = store.pool();
    let mut listener = match connect_listener(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            let _ = pages.send(Err(error.into())).await;
            return;
        }
    };
    let mut position = from;
    let mut busy_at = Instant::now();
    let mut listening = false;
    if let Err(error) = wakeup::set_listening(pool, false).await {
        let _ = pages.send(Err(error.into())).await;
        return;
    }
    while !stop.is_cancelled() {
        let page = match store.read_global_log_raw(position, config.batch_size).await {
            Ok(page) => page,
            Err(error) => {
                let _ = pages.send(Err(error)).await;
                return;
            }
        };
        if let Some(last) = page.last() {
            position = last.position;
            busy_at = Instant::now();
            let full = page.len() == config.batch_size as usize;
            if listening {
                if let Err(error) = wakeup::set_listening(pool, false).await {
                    let _ = pages.send(Err(error.into())).await;
                    return;
                }
                listening = false;
            }
            if pages.send(Ok(page)).await.is_err() {
                return;
            }
            if full {
                continue;
            }
        }
        if busy_at.elapsed() < config.idle_after() {
            service::retry::pause(config.active_poll(), &stop).await;
        } else if !listening {
            // Ask, then read once more before waiting (see `wakeup`).
            if let Err(error) = wakeup::set_listening(pool, true).await {
                let _ = pages.send(Err(error.into())).await;
                return;
            }
            listening = true;
        } else if wait_for_events(&mut listener, config.idle_poll(), &stop).await {
            // Notified: the event may not be readable yet (an older transaction still
            // open holds back the horizon), so poll closely again for a while.
            busy_at = Instant::now();
        }
    }
}

async fn connect_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENTS_APPENDED).await?;
    Ok(listener)
}

/// Sleeps until an append is notified, `idle` passes, or shutdown; true when notified.
async fn wait_for_events(
    listener: &mut PgListener,
    idle: Duration,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(idle) => false,
        notification = listener.recv() => match notification {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "listening for appends failed; polling");
                service::retry::pause(idle, shutdown).await;
                false
            }
        },
    }
}
