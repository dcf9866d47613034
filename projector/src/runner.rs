//! One projection's consumer loop: take a batch from Kafka, project it, park what it
//! cannot use, and only then commit the offsets. The commit follows the writes it covers,
//! so a crash or a rebalance replays records (harmless: every write is idempotent) and
//! never skips one. rdkafka's blocking calls (lag) run on the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use service::retry;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectorConfig;
use crate::dlq::DeadLetters;
use crate::metrics::ProjectorMetrics;
use crate::projections::{self, Projection, Sinks};

pub struct Runner {
    projection: Projection,
    consumer: Arc<StreamConsumer>,
    sinks: Sinks,
    dead_letters: DeadLetters,
    metrics: Arc<ProjectorMetrics>,
    batch_size: usize,
    batch_wait: Duration,
    topics: Vec<String>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("projection", &self.projection)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(
        projection: Projection,
        config: &ProjectorConfig,
        sinks: Sinks,
        dead_letters: DeadLetters,
        metrics: Arc<ProjectorMetrics>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set(
                "group.id",
                format!("{}-{}", config.group_prefix, projection.name()),
            )
            // Offsets are committed by hand, after the writes they cover.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()?;
        let topics: Vec<String> = projection
            .aggregates()
            .iter()
            .map(|aggregate| relay::cloudevents::topic_for(&config.topic_prefix, aggregate))
            .collect();
        Ok(Self {
            projection,
            consumer: Arc::new(consumer),
            sinks,
            dead_letters,
            metrics,
            batch_size: config.batch_size,
            batch_wait: config.batch_wait(),
            topics,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), rdkafka::error::KafkaError> {
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&names)?;
        tracing::info!(projection = self.projection.name(), topics = ?self.topics, "projection started");
        let lag = tokio::spawn(track_lag(
            self.projection,
            self.consumer.clone(),
            self.topics.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        while let Some(batch) = self.next_batch(&shutdown).await {
            if !self.project(batch, &shutdown).await {
                break;
            }
        }
        let _ = lag.await;
        tracing::info!(projection = self.projection.name(), "projection stopped");
        Ok(())
    }

    /// Up to `batch_size` records: waits for the first, then at most `batch_wait` for more.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let first = tokio::select! {
            () = shutdown.cancelled() => return None,
            message = self.consumer.recv() => message,
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        match first {
            Ok(message) => batch.push(message.detach()),
            Err(error) => {
                tracing::warn!(projection = self.projection.name(), %error, "kafka error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Some(batch);
            }
        }
        let deadline = tokio::time::Instant::now() + self.batch_wait;
        while batch.len() < self.batch_size {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(error)) => {
                    tracing::warn!(projection = self.projection.name(), %error, "kafka error while batching");
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        Some(batch)
    }

    /// Projects one batch, retrying transient failures until they pass or shutdown;
    /// false on shutdown before the batch was done (its offsets stay uncommitted).
    async fn project(&self, batch: Vec<OwnedMessage>, shutdown: &CancellationToken) -> bool {
        if batch.is_empty() {
            return true;
        }
        let label = ProjectorMetrics::label(self.projection.name());
        let mut poison: Vec<(OwnedMessage, String)> = Vec::new();
        let mut incoming = Vec::with_capacity(batch.len());
        for message in &batch {
            match projections::decode(self.projection, message) {
                Ok(decoded) => incoming.push(decoded),
                Err(reason) => poison.push((message.clone(), reason)),
            }
        }
        if incoming.iter().any(|record| record.reference) {
            let mut backoff = retry::Backoff::new();
            let unusable = loop {
                match projections::complete(self.projection, &self.sinks.store, &mut incoming).await
                {
                    Ok(unusable) => break unusable,
                    Err(error) => {
                        tracing::warn!(projection = self.projection.name(), %error, "reading referenced events failed; retrying");
                        if !backoff.wait(shutdown).await {
                            return false;
                        }
                    }
                }
            };
            for (index, reason) in unusable.into_iter().rev() {
                poison.push((incoming.remove(index).message, reason));
            }
        }
        let (usable, envelopes): (Vec<OwnedMessage>, Vec<_>) = incoming
            .into_iter()
            .map(|record| (record.message, record.envelope))
            .unzip();

        let (projection, sinks) = (self.projection, &self.sinks);
        let batch_events = &envelopes;
        let projected = retry::until_ok(shutdown, "projecting the batch", move || {
            projections::apply(projection, sinks, batch_events)
        })
        .await;
        let Some(rejected) = projected else {
            return false;
        };
        poison.extend(
            rejected
                .into_iter()
                .map(|(index, reason)| (usable[index].clone(), reason)),
        );

        for (message, reason) in &poison {
            let dead_letters = &self.dead_letters;
            let parked = retry::until_ok(shutdown, "parking a record", move || {
                dead_letters.park(message, projection.name(), reason)
            })
            .await;
            if parked.is_none() {
                return false;
            }
            self.metrics.dead_lettered.get_or_create(&label).inc();
        }

        self.commit(&batch);
        self.metrics
            .projected
            .get_or_create(&label)
            .inc_by((batch.len() - poison.len()) as u64);
        if let Some(last) = envelopes.last() {
            let age = Utc::now()
                .signed_duration_since(last.recorded_at)
                .num_milliseconds()
                .max(0) as f64
                / 1000.0;
            self.metrics.lag_seconds.get_or_create(&label).set(age);
        }
        true
    }

    /// Commits, per partition, the offset after the batch's last record there.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for message in batch {
            let entry = next
                .entry((message.topic().to_owned(), message.partition()))
                .or_default();
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if let Err(error) =
                offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(%error, "invalid offset");
            }
        }
        // Async: the next commit supersedes a lost one, and a replay is harmless.
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(projection = self.projection.name(), %error, "committing offsets failed");
        }
    }
}

/// Records behind per projection: high watermark minus committed offset, summed over the
/// assigned partitions, every two seconds.
async fn track_lag(
    projection: Projection,
    consumer: Arc<StreamConsumer>,
    topics: Vec<String>,
    metrics: Arc<ProjectorMetrics>,
    shutdown: CancellationToken,
) {
    let label = ProjectorMetrics::label(projection.name());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let consumer = consumer.clone();
        let topics = topics.clone();
        let lag = tokio::task::spawn_blocking(move || lag_of(&consumer, &topics)).await;
        if let Ok(Ok(lag)) = lag {
            metrics.lag_events.get_or_create(&label).set(lag);
            if lag == 0 {
                metrics.lag_seconds.get_or_create(&label).set(0.0);
            }
        }
    }
}

fn lag_of(consumer: &StreamConsumer, topics: &[String]) -> Result<i64, rdkafka::error::KafkaError> {
    let timeout = Duration::from_secs(5);
    let mut lag = 0;
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let Some(topic_metadata) = metadata.topics().first() else {
            continue;
        };
        let mut wanted = TopicPartitionList::new();
        for partition in topic_metadata.partitions() {
            wanted.add_partition(topic, partition.id());
        }
        let committed = consumer.committed_offsets(wanted, timeout)?;
        for partition in topic_metadata.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
            let done = committed
                .find_partition(topic, partition.id())
                .and_then(|p| match p.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .unwrap_or(low);
            lag += (high - done).max(0);
        }
    }
    Ok(lag)
}
