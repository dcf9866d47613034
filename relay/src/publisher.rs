//! The Kafka producer. Idempotent (`enable.idempotence`, `acks=all`): within a partition
//! it neither duplicates nor reorders on retries. Java-compatible murmur2 partitioning,
//! so any client computes the same partition for a stream.

use std::collections::VecDeque;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use event_store::GlobalLogEvent;

use crate::RelayConfig;
use crate::cloudevents::KafkaRecord;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka refused or lost a record: {0}")]
    Kafka(#[from] KafkaError),
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
        .set("message.timeout.ms", delivery_timeout_ms.to_string());
    config
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic_prefix: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic_prefix", &self.topic_prefix)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(config: &RelayConfig) -> Result<Self, KafkaError> {
        let producer = producer_config(
            &config.kafka_brokers,
            config.delivery_timeout_ms,
            config.linger_ms,
        )
        .create()?;
        Ok(Self {
            producer,
            topic_prefix: config.topic_prefix.clone(),
        })
    }

    /// Publishes `events` in order and returns once Kafka acknowledged every one.
    /// On error, some may have been delivered: the caller re-publishes from its checkpoint.
    pub async fn publish(&self, events: &[GlobalLogEvent]) -> Result<(), PublishError> {
        let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::with_capacity(events.len());
        for event in events {
            let record = KafkaRecord::for_event(&self.topic_prefix, &event.event);
            let delivery = self.enqueue(&record, &mut in_flight).await?;
            in_flight.push_back(delivery);
        }
        for delivery in in_flight {
            await_delivery(delivery).await?;
        }
        Ok(())
    }

    /// Hands `record` to the producer's queue; when the queue is full, waits for the
    /// oldest record in flight first.
    async fn enqueue(
        &self,
        record: &KafkaRecord,
        in_flight: &mut VecDeque<DeliveryFuture>,
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
                        Some(oldest) => await_delivery(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
}

async fn await_delivery(delivery: DeliveryFuture) -> Result<(), PublishError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _message))) => Err(error.into()),
        Err(_canceled) => Err(PublishError::Canceled),
    }
}
