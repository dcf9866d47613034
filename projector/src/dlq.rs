//! The dead-letter topic `<prefix>.dlq`: a record a projection cannot use (undecodable,
//! an unknown event type, refused by Elasticsearch) is parked here with the reason in its
//! headers, and the projection goes on with the next. Parking is awaited before the
//! offset is committed, so a poison record is never just dropped.
//!
//! `projector dlq list` shows what is parked; `projector dlq redrive` hands each parked
//! record back to the projection that parked it, once the cause is fixed.

use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::ProjectorConfig;

pub const REASON: &str = "dlq_reason";
pub const PROJECTION: &str = "dlq_projection";
pub const ORIGINAL_TOPIC: &str = "dlq_original_topic";
pub const ORIGINAL_PARTITION: &str = "dlq_original_partition";
pub const ORIGINAL_OFFSET: &str = "dlq_original_offset";
pub const FAILED_AT: &str = "dlq_failed_at";

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(config: &ProjectorConfig) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?;
        Ok(Self {
            producer,
            topic: config.dlq_topic(),
        })
    }

    /// Parks `message` with `reason`; returns once Kafka acknowledged it.
    pub async fn park(
        &self,
        message: &OwnedMessage,
        projection: &str,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let failed_at = Utc::now().to_rfc3339();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let dlq_headers = [
            (REASON, reason),
            (PROJECTION, projection),
            (ORIGINAL_TOPIC, message.topic()),
            (ORIGINAL_PARTITION, partition.as_str()),
            (ORIGINAL_OFFSET, offset.as_str()),
            (FAILED_AT, failed_at.as_str()),
        ];
        for (key, value) in dlq_headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        tracing::warn!(
            projection,
            reason,
            topic = message.topic(),
            offset = message.offset(),
            "record parked in the dead-letter topic"
        );
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}

/// A parked record, as `projector dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub dlq_offset: i64,
    pub projection: String,
    pub reason: String,
    pub original_topic: String,
    pub original_partition: String,
    pub original_offset: String,
    pub failed_at: String,
    pub key: Option<String>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
}

fn header(message: &OwnedMessage, name: &str) -> String {
    message
        .headers()
        .and_then(|headers| headers.iter().find(|h| h.key == name).and_then(|h| h.value))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn read_all(
    config: &ProjectorConfig,
    group: Option<&str>,
) -> Result<(BaseConsumer, Vec<OwnedMessage>), rdkafka::error::KafkaError> {
    let topic = config.dlq_topic();
    let group_id = group.map_or_else(
        || format!("dlq-reader-{}", uuid::Uuid::now_v7().simple()),
        str::to_owned,
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", &group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let committed = if group.is_some() {
        let mut wanted = TopicPartitionList::new();
        for partition in &partitions {
            wanted.add_partition(&topic, *partition);
        }
        Some(consumer.committed_offsets(wanted, Duration::from_secs(10))?)
    } else {
        None
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, *partition, Duration::from_secs(10))?;
        let start = committed
            .as_ref()
            .and_then(|c| c.find_partition(&topic, *partition))
            .and_then(|p| match p.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
            .unwrap_or(low);
        if start < high {
            assignment.add_partition_offset(&topic, *partition, Offset::Offset(start))?;
            ends.push((*partition, high));
        }
    }
    let mut messages = Vec::new();
    if ends.is_empty() {
        return Ok((consumer, messages));
    }
    consumer.assign(&assignment)?;
    let mut remaining: std::collections::HashMap<i32, i64> = ends.into_iter().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !remaining.is_empty() && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let message = message.detach();
            if let Some(high) = remaining.get(&message.partition())
                && message.offset() + 1 >= *high
            {
                remaining.remove(&message.partition());
            }
            messages.push(message);
        }
    }
    Ok((consumer, messages))
}

/// Everything parked, oldest first per partition. Blocking: call off the runtime.
pub fn list(config: &ProjectorConfig) -> Result<Vec<DeadLetter>, rdkafka::error::KafkaError> {
    let (_, messages) = read_all(config, None)?;
    Ok(messages
        .iter()
        .map(|message| {
            let envelope: Option<serde_json::Value> = message
                .payload()
                .and_then(|p| serde_json::from_slice(p).ok());
            DeadLetter {
                dlq_offset: message.offset(),
                projection: header(message, PROJECTION),
                reason: header(message, REASON),
                original_topic: header(message, ORIGINAL_TOPIC),
                original_partition: header(message, ORIGINAL_PARTITION),
                original_offset: header(message, ORIGINAL_OFFSET),
                failed_at: header(message, FAILED_AT),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                event_type: envelope
                    .as_ref()
                    .and_then(|e| e["event_type"].as_str().map(str::to_owned)),
                event_id: envelope
                    .as_ref()
                    .and_then(|e| e["event_id"].as_str().map(str::to_owned)),
            }
        })
        .collect())
}

/// What a redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RedriveSummary {
    /// Records the projection that parked them has now projected.
    pub projected: usize,
    /// Records that failed again, parked anew with the new reason.
    pub parked_again: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] read_model::es::EsError),
    #[error("projecting: {0}")]
    Projection(#[from] crate::projections::ProjectionError),
}

/// Hands every record parked since the last redrive back to the projection that parked
/// it, directly (not through its topic, which every projection reads). What fails again
/// is parked again with the new reason; how far the redrive got is kept by a consumer
/// group, committed only after every record was handled.
pub async fn redrive(config: &ProjectorConfig) -> Result<RedriveSummary, RedriveError> {
    use crate::projections::{self, Sinks, registry};
    let group = format!("{}-dlq-redrive", config.group_prefix);
    let reader_config = config.clone();
    let (consumer, messages) =
        tokio::task::spawn_blocking(move || read_all(&reader_config, Some(&group)))
            .await
            .expect("the dead-letter reader does not panic")?;
    let pool = event_store::pool::options(2)
        .connect(config.database_url.expose())
        .await?;
    let sinks = Sinks::live(
        event_store::EventStore::new(pool),
        read_model::es::Es::new(&config.elasticsearch_url)?,
        &config.index_prefix,
    );
    let dead_letters = DeadLetters::new(config)?;
    let mut summary = RedriveSummary::default();
    let mut next_offsets: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for message in &messages {
        let projection_name = header(message, PROJECTION);
        let outcome = match registry::named(&projection_name) {
            None => Err(format!("unknown projection `{projection_name}`")),
            Some(projection) => match projections::decode(projection, message) {
                Err(reason) => Err(reason),
                Ok(incoming) => {
                    let mut records = vec![incoming];
                    let unusable =
                        projections::complete(projection, &sinks.store, &mut records).await?;
                    match unusable.into_iter().next() {
                        Some((_, reason)) => Err(reason),
                        None => projection
                            .apply(&sinks, std::slice::from_ref(&records[0].envelope))
                            .await?
                            .into_iter()
                            .next()
                            .map_or(Ok(()), |(_, reason)| Err(reason)),
                    }
                }
            },
        };
        match outcome {
            Ok(()) => summary.projected += 1,
            Err(reason) => {
                dead_letters
                    .park(message, &projection_name, &reason)
                    .await?;
                summary.parked_again += 1;
            }
        }
        let next = next_offsets.entry(message.partition()).or_default();
        *next = (*next).max(message.offset() + 1);
    }
    if !next_offsets.is_empty() {
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in next_offsets {
            offsets.add_partition_offset(&config.dlq_topic(), partition, Offset::Offset(next))?;
        }
        tokio::task::spawn_blocking(move || {
            consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        })
        .await
        .expect("committing does not panic")?;
    }
    Ok(summary)
}
