//! The Kafka producer. Idempotent (`enable.idempotence`, `acks=all`): within a partition
//! it neither duplicates nor reorders on retries. Java-compatible murmur2 partitioning,
//! so any client computes the same partition for a stream.
//!
//! A page is handed to the producer whole and its acknowledgements awaited later
//! ([`InFlight`]), so the relay reads the next page while Kafka works on this one.
//!
//! An event too large for its topic would be refused and, retried forever, stall every
//! event behind it: it goes out as a reference record instead (see
//! [`kafka_wire::DATAREF`]), decided before sending so the stream keeps its order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use event_store::{LogPosition, RawLogEvent};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::RelayConfig;
use crate::metrics::RelayMetrics;
use crate::topics::Topics;
use kafka_wire::KafkaRecord;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka refused or lost a record: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker refused a record as too large, though it was under the topic's known
    /// limit; the limit is lowered and the batch re-published (with a reference record).
    #[error("kafka refused a record of {size} bytes on {topic} as too large")]
    TooLarge { topic: String, size: usize },
    #[error("the producer shut down before acknowledging a record")]
    Canceled,
}

/// The producer settings shared by the relay and the baseline of `./dev bench relay`.
pub fn producer_config(brokers: &str, delivery_timeout_ms: u64, linger_ms: u64) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("compression.type", "lz4")
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", delivery_timeout_ms.to_string())
        // A broker that went away and came back is noticed in seconds: requests time out
        // and connections are retried quickly, not after librdkafka's minute-long defaults.
        .set("socket.timeout.ms", "10000")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("socket.keepalive.enable", "true");
    config
}

/// Leaves room for what the broker counts beyond key, value and headers (record and
/// batch overhead).
const RECORD_OVERHEAD: usize = 512;

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic_prefix: String,
    /// The producer's own record limit (`message.max.bytes`).
    max_record_bytes: usize,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic_prefix", &self.topic_prefix)
            .finish_non_exhaustive()
    }
}

/// A page handed to the producer, not yet acknowledged.
pub struct InFlight {
    /// The position of the page's last event: the checkpoint once all of it is acknowledged.
    pub last: LogPosition,
    pub events: usize,
    /// When the page was handed to the producer.
    pub sent_at: Instant,
    deliveries: VecDeque<(String, usize, DeliveryFuture)>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("last", &self.last)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// Waits until Kafka acknowledged every record of the page. Cancel-safe: what was
    /// acknowledged before a cancellation stays acknowledged.
    pub async fn acknowledged(&mut self) -> Result<(), PublishError> {
        while let Some((topic, size, delivery)) = self.deliveries.front_mut() {
            let outcome = await_delivery(topic, *size, delivery).await;
            self.deliveries.pop_front();
            outcome?;
        }
        Ok(())
    }
}

impl Publisher {
    pub fn new(config: &RelayConfig) -> Result<Self, KafkaError> {
        let mut client = producer_config(
            &config.kafka_brokers,
            config.delivery_timeout_ms,
            config.linger_ms,
        );
        client.set("message.max.bytes", config.max_record_bytes.to_string());
        Ok(Self {
            producer: client.create()?,
            topic_prefix: config.topic_prefix.clone(),
            max_record_bytes: config.max_record_bytes,
        })
    }

    /// Hands every event of `page` to the producer, in order; returns what to await.
    pub async fn send(
        &self,
        page: &[RawLogEvent],
        topics: &Topics,
        metrics: &RelayMetrics,
    ) -> Result<InFlight, PublishError> {
        let mut in_flight = InFlight {
            last: page.last().map_or(LogPosition::START, |e| e.position),
            events: page.len(),
            sent_at: Instant::now(),
            deliveries: VecDeque::with_capacity(page.len()),
        };
        for event in page {
            let mut record = KafkaRecord::for_logged(&self.topic_prefix, event);
            let limit = topics
                .record_limit(&record.topic)
                .map_or(self.max_record_bytes, |topic| {
                    topic.min(self.max_record_bytes)
                });
            let size = record.size();
            if size + RECORD_OVERHEAD > limit {
                tracing::warn!(
                    event_id = %event.event_id,
                    tenant = %event.tenant_id,
                    stream = %event.stream_id,
                    size,
                    limit,
                    "event too large for kafka: publishing a reference record"
                );
                metrics.oversized();
                record = KafkaRecord::reference_for(&self.topic_prefix, event);
            }
            let delivery = self.enqueue(&record, &mut in_flight.deliveries).await?;
            let size = record.size();
            in_flight
                .deliveries
                .push_back((record.topic, size, delivery));
        }
        Ok(in_flight)
    }

    /// Hands `record` to the producer's queue; when the queue is full, waits for the
    /// oldest record in flight first.
    async fn enqueue(
        &self,
        record: &KafkaRecord,
        in_flight: &mut VecDeque<(String, usize, DeliveryFuture)>,
    ) -> Result<DeliveryFuture, PublishError> {
        loop {
            let headers =
                record
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |headers, (key, value)| {
                        headers.insert(Header {
                            key,
                            value: Some(value.as_bytes()),
                        })
                    });
            let future_record = FutureRecord::to(&record.topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers);
            match self.producer.send_result(future_record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match in_flight.pop_front() {
                        Some((topic, size, mut oldest)) => {
                            await_delivery(&topic, size, &mut oldest).await?;
                        }
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(PublishError::TooLarge {
                        topic: record.topic.clone(),
                        size: record.size(),
                    });
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
}

async fn await_delivery(
    topic: &str,
    size: usize,
    delivery: &mut DeliveryFuture,
) -> Result<(), PublishError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
            _message,
        ))) => Err(PublishError::TooLarge {
            topic: topic.to_owned(),
            size,
        }),
        Ok(Err((error, _message))) => Err(error.into()),
        Err(_canceled) => Err(PublishError::Canceled),
    }
}
