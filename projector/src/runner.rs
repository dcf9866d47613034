//! One projection's consumer loop: take a batch from Kafka, project it, park what it
//! cannot use, and only then commit the offsets. The commit follows the writes it covers,
//! so a crash or a rebalance replays records (harmless: every write is idempotent) and
//! never skips one. rdkafka's blocking calls (lag) run on the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use event_store::EventStore;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use service::retry;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectorConfig;
use crate::dlq::DeadLetters;
use crate::metrics::ProjectorMetrics;
use crate::projections::{self, ProjectionRef, Sinks};

pub struct Runner {
    projection: ProjectionRef,
    /// What each consumer of this projection is made from (a stuck one is replaced).
    client_config: ClientConfig,
    consumer: Arc<StreamConsumer>,
    sinks: Sinks,
    dead_letters: DeadLetters,
    metrics: Arc<ProjectorMetrics>,
    batch_size: usize,
    batch_wait: Duration,
    topics: Vec<String>,
    /// Whose checkpoint says what is not yet in Kafka (part of the lag).
    relay_name: String,
    errors: KafkaErrorLog,
}

/// Kafka errors, logged at most every [`KafkaErrorLog::EVERY`] with how many were not.
#[derive(Debug, Default)]
struct KafkaErrorLog {
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl KafkaErrorLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&self, projection: ProjectionRef, error: &rdkafka::error::KafkaError) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < Self::EVERY) {
            *suppressed += 1;
            return;
        }
        tracing::warn!(projection = projection.name(), %error, suppressed = *suppressed, "kafka error; the client retries by itself");
        *last = Some(std::time::Instant::now());
        *suppressed = 0;
    }
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
        projection: ProjectionRef,
        config: &ProjectorConfig,
        sinks: Sinks,
        dead_letters: DeadLetters,
        metrics: Arc<ProjectorMetrics>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let mut client_config = ClientConfig::new();
        client_config
            .set("bootstrap.servers", &config.kafka_brokers)
            .set(
                "group.id",
                format!("{}-{}", config.group_prefix, projection.name()),
            )
            // Offsets are committed by hand, after the writes they cover.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "5000")
            // A dead member is noticed in seconds (its partitions go to the living), and a
            // broker that went away and came back is reached again in seconds, not after
            // librdkafka's minute-long request timeout.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "2000")
            .set("socket.timeout.ms", "10000")
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("reconnect.backoff.max.ms", "1000")
            .set("socket.keepalive.enable", "true");
        let consumer: StreamConsumer = client_config.create()?;
        let topics: Vec<String> = projection
            .aggregates()
            .iter()
            .map(|aggregate| kafka_wire::topic_for(&config.topic_prefix, aggregate))
            .collect();
        Ok(Self {
            projection,
            client_config,
            consumer: Arc::new(consumer),
            sinks,
            dead_letters,
            metrics,
            batch_size: config.batch_size,
            batch_wait: config.batch_wait(),
            topics,
            relay_name: config.relay_name.clone(),
            errors: KafkaErrorLog::default(),
        })
    }

    /// Consumes until shutdown. A consumer that stays stuck (librdkafka can lose its group
    /// coordinator for good after a broker restart: no partitions, no lag, no records) is
    /// replaced by a new one; what it had not committed is read again.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<(), rdkafka::error::KafkaError> {
        tracing::info!(projection = self.projection.name(), topics = ?self.topics, "projection started");
        while let Some(trouble) = self.session(&shutdown).await? {
            tracing::warn!(
                projection = self.projection.name(),
                %trouble,
                "the kafka consumer stayed stuck; replacing it"
            );
            let fresh = Arc::new(self.client_config.create::<StreamConsumer>()?);
            let stuck = std::mem::replace(&mut self.consumer, fresh);
            // Its close may wait on the coordinator it lost: not on this task.
            std::thread::spawn(move || drop(stuck));
            self.metrics.new_consumer(self.projection);
        }
        close(self.projection, self.consumer, CLOSE_WITHIN).await;
        tracing::info!(projection = self.projection.name(), "projection stopped");
        Ok(())
    }

    /// One consumer's life: subscribe, project batches; `None` on shutdown, or what kept
    /// the consumer stuck for [`REPLACE_AFTER`].
    async fn session(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, rdkafka::error::KafkaError> {
        let names: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&names)?;
        let lag_stop = shutdown.child_token();
        let lag = tokio::spawn(track_lag(
            self.projection,
            self.consumer.clone(),
            self.topics.clone(),
            self.sinks.store.clone(),
            self.relay_name.clone(),
            self.metrics.clone(),
            lag_stop.clone(),
        ));
        let mut trouble_since: Option<std::time::Instant> = None;
        let end = loop {
            let Some(batch) = self.next_batch(shutdown).await else {
                break None;
            };
            if batch.is_empty() && self.metrics.unassigned_too_long(self.projection) {
                // Held no partition for long (the group lost it, a coordinator that went
                // away): a new member joins instead of waiting to be given some. Not an
                // unsubscribe and subscribe on this one: librdkafka serves those through
                // the very group coordinator that may be gone, and they would block this
                // task (and shutdown) for as long.
                break Some("no partition assigned for too long".to_owned());
            }
            if !self.project(batch, shutdown).await {
                break None;
            }
            match self.metrics.consumer_trouble(self.projection) {
                None => trouble_since = None,
                Some(trouble) => {
                    let since = *trouble_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > REPLACE_AFTER {
                        break Some(trouble);
                    }
                }
            }
        };
        // The lag task may be inside a blocking Kafka call with seconds of timeout left
        // (committed offsets from a coordinator that is going away): nobody waits for a
        // measurement nobody will read.
        lag_stop.cancel();
        lag.abort();
        let _ = lag.await;
        Ok(end)
    }

    /// Up to `batch_size` records: waits for the first, then at most `batch_wait` for more.
    /// An empty batch after a quiet while, so the loop can look after itself.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let first = tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(5)) => return Some(Vec::new()),
            message = self.consumer.recv() => message,
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        match first {
            Ok(message) => batch.push(message.detach()),
            Err(error) => {
                // librdkafka reports each failed reconnection while a broker is away and
                // recovers by itself. Waiting here would only slow the draining of those
                // reports, and with it the group's rejoin once the broker is back: go
                // straight on, and say so once in a while rather than each time.
                self.errors.note(self.projection, &error);
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

        let mut backoff = retry::Backoff::new();
        let rejected = loop {
            match self.projection.apply(&self.sinks, &envelopes).await {
                Ok(rejected) => break rejected,
                Err(error) => {
                    self.metrics.failing(self.projection);
                    tracing::warn!(projection = self.projection.name(), %error, "projecting the batch failed; retrying");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        };
        poison.extend(
            rejected
                .into_iter()
                .map(|(index, reason)| (usable[index].clone(), reason)),
        );

        for (message, reason) in &poison {
            let dead_letters = &self.dead_letters;
            let parked = retry::until_ok(shutdown, "parking a record", move || {
                dead_letters.park(message, self.projection.name(), reason)
            })
            .await;
            if parked.is_none() {
                return false;
            }
            self.metrics.dead_lettered.get_or_create(&label).inc();
        }

        self.commit(&batch);
        self.metrics.progressed(self.projection);
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

/// How long a consumer may stay in trouble (health already failing) before it is replaced.
/// Long enough that a broker coming back (its coordinator loading offsets, when the lag
/// cannot be measured for a while though records flow) is not mistaken for a stuck one.
const REPLACE_AFTER: Duration = Duration::from_secs(60);

/// How long shutdown waits for a consumer to leave its group cleanly (commit, leave): a
/// consumer whose coordinator is away would wait for minutes.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Closes `consumer` on a thread of its own, waiting at most `within`: past that the
/// process goes on without it (the group notices the member gone after its session
/// timeout, and records not committed are read again: harmless).
async fn close(projection: ProjectionRef, consumer: Arc<StreamConsumer>, within: Duration) {
    let (closed, done) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    if tokio::time::timeout(within, done).await.is_err() {
        tracing::warn!(
            projection = projection.name(),
            "the kafka consumer did not close in time; going on without it"
        );
    }
}

/// Events behind per projection, every two seconds (see the metrics module): the records
/// on every partition of its topics that its group has not committed, plus the events the
/// relay has not published; and how many partitions this member holds. Kafka's calls
/// block: they run on the blocking pool.
async fn track_lag(
    projection: ProjectionRef,
    consumer: Arc<StreamConsumer>,
    topics: Vec<String>,
    store: EventStore,
    relay_name: String,
    metrics: Arc<ProjectorMetrics>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let in_kafka = {
            let (consumer, topics) = (consumer.clone(), topics.clone());
            tokio::task::spawn_blocking(move || kafka_lag(&consumer, &topics)).await
        };
        let unpublished = unpublished(&store, &relay_name).await;
        match (in_kafka, unpublished) {
            (Ok(Ok((kafka, assigned))), Ok(unpublished)) => {
                metrics.measured(projection, kafka, unpublished, assigned);
            }
            (Ok(Err(error)), _) => {
                tracing::warn!(projection = projection.name(), %error, "could not measure the lag in kafka");
            }
            (_, Err(error)) => {
                tracing::warn!(projection = projection.name(), %error, "could not measure the unpublished events");
            }
            (Err(error), _) => tracing::warn!(%error, "the lag measurement panicked"),
        }
    }
}

/// Events in the store the relay has not yet published.
async fn unpublished(store: &EventStore, relay_name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT events AS "events!" FROM unpublished_events($1)"#,
        relay_name
    )
    .fetch_one(store.pool())
    .await
}

/// Records not committed by the group on every partition of `topics`, and the partitions
/// this member holds.
fn kafka_lag(
    consumer: &StreamConsumer,
    topics: &[String],
) -> Result<(i64, usize), rdkafka::error::KafkaError> {
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
    let assigned = consumer.assignment()?.count();
    Ok((lag, assigned))
}
