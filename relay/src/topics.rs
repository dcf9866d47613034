//! The relay's topics, created before the first record goes to them: automatic topic
//! creation is off on Chronicle's brokers, and a topic made by accident would have the
//! broker's defaults (retention, partitions) instead of ours.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use schemas::{CustomerEvent, DomainEvent, TenantEvent, UserEvent};

use event_store::GlobalLogEvent;

use crate::RelayConfig;
use crate::cloudevents::topic_for;

/// The aggregates Chronicle has today; their topics exist from the first start.
pub const AGGREGATES: [&str; 3] = [
    TenantEvent::AGGREGATE,
    UserEvent::AGGREGATE,
    CustomerEvent::AGGREGATE,
];

pub struct Topics {
    admin: AdminClient<DefaultClientContext>,
    prefix: String,
    partitions: i32,
    replication_factor: i32,
    ensured: HashSet<String>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("prefix", &self.prefix)
            .field("ensured", &self.ensured)
            .finish_non_exhaustive()
    }
}

impl Topics {
    pub fn new(config: &RelayConfig) -> Result<Self, KafkaError> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .create()?;
        Ok(Self {
            admin,
            prefix: config.topic_prefix.clone(),
            partitions: config.topic_partitions,
            replication_factor: config.replication_factor,
            ensured: HashSet::new(),
        })
    }

    /// Makes sure the topic of every aggregate in `page` (and the known ones) exists.
    pub async fn ensure_for(&mut self, page: &[GlobalLogEvent]) -> Result<(), KafkaError> {
        let mut wanted: Vec<String> = AGGREGATES
            .iter()
            .map(|a| topic_for(&self.prefix, a))
            .collect();
        wanted.extend(
            page.iter()
                .map(|e| topic_for(&self.prefix, e.event.stream_id.category())),
        );
        wanted.retain(|topic| !self.ensured.contains(topic));
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        create_topics(
            &self.admin,
            &wanted,
            self.partitions,
            self.replication_factor,
        )
        .await?;
        tracing::info!(topics = ?wanted, "topics ready");
        self.ensured.extend(wanted);
        Ok(())
    }
}

/// Creates `topics` with unlimited retention (they are a replay source too); a topic
/// that already exists is left as it is.
pub async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
) -> Result<(), KafkaError> {
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            )
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1")
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::warn!(%topic, ?code, "topic creation failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
