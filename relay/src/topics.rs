//! The relay's topics, created before the first record goes to them: automatic topic
//! creation is off on Chronicle's brokers, and a topic made by accident would have the
//! broker's defaults (retention, partitions) instead of ours.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;

use event_store::RawLogEvent;
use kafka_wire::topic_for;
use kafka_wire::topics::create_topics;
use schemas::AggregateType;

use crate::RelayConfig;

pub struct Topics {
    admin: AdminClient<DefaultClientContext>,
    prefix: String,
    partitions: i32,
    replication_factor: i32,
    /// The aggregates whose topics exist (by aggregate, so a page needs no topic names).
    ensured: HashSet<String>,
    /// The largest record each topic takes (its `max.message.bytes`), as the broker said, or
    /// lower once a delivery showed the broker refusing less.
    record_limits: HashMap<String, usize>,
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
            record_limits: HashMap::new(),
        })
    }

    /// The largest record `topic` takes, when known.
    pub fn record_limit(&self, topic: &str) -> Option<usize> {
        self.record_limits.get(topic).copied()
    }

    /// Records that `topic` refused a record of `refused` bytes: anything that large is sent
    /// as a reference from now on.
    pub fn lower_record_limit(&mut self, topic: &str, refused: usize) {
        let limit = self
            .record_limits
            .entry(topic.to_owned())
            .or_insert(refused);
        *limit = (*limit).min(refused.saturating_sub(1));
    }

    /// Makes sure the topic of every aggregate in `page` (and of every aggregate type) exists.
    /// Runs for every page the relay reads: once the topics exist, it only looks up each
    /// event's aggregate, allocating nothing.
    pub async fn ensure_for<'p>(&mut self, page: &'p [RawLogEvent]) -> Result<(), KafkaError> {
        let every_type = AggregateType::names().map(|name| -> &'p str { name });
        let mut missing: Vec<&'p str> = page
            .iter()
            .map(RawLogEvent::category)
            .chain(every_type)
            .filter(|aggregate| !self.ensured.contains(*aggregate))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let wanted: Vec<String> = missing
            .iter()
            .map(|aggregate| topic_for(&self.prefix, aggregate))
            .collect();
        create_topics(
            &self.admin,
            &wanted,
            self.partitions,
            self.replication_factor,
        )
        .await?;
        for (topic, limit) in record_limits(&self.admin, &wanted).await? {
            self.record_limits.insert(topic, limit);
        }
        tracing::info!(topics = ?wanted, limits = ?self.record_limits, "topics ready");
        self.ensured.extend(missing.into_iter().map(str::to_owned));
        Ok(())
    }
}

/// Each topic's `max.message.bytes`: records larger than that are refused by the broker.
async fn record_limits(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
) -> Result<Vec<(String, usize)>, KafkaError> {
    let specifiers: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let mut limits = Vec::new();
    for (topic, result) in topics
        .iter()
        .zip(admin.describe_configs(&specifiers, &options).await?)
    {
        let limit = result
            .ok()
            .and_then(|resource| resource.get("max.message.bytes")?.value.clone())
            .and_then(|value| value.parse().ok());
        if let Some(limit) = limit {
            limits.push((topic.clone(), limit));
        }
    }
    Ok(limits)
}
