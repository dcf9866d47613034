//! The checks after a fault, from the store outward:
//! - every command answered 2xx is in the event store, once (no customer twice);
//! - every stored event is in Kafka, each stream's events in order;
//! - the read model and every index match the store (`projector verify`);
//! - no read-model document went back to an older version.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use event_store::{EventStore, LogPosition};
use projector::ProjectorConfig;
use projector::projections::registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use uuid::Uuid;

use super::load::Ledger;

/// One verification's findings; all zero is a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Accepted (customer, version) pairs the store does not have.
    pub lost_in_store: u64,
    /// Customers in the store no accepted create made (a retry that created twice).
    pub duplicated: u64,
    /// Stored events not in Kafka.
    pub lost_in_kafka: u64,
    /// Streams whose events reached Kafka out of order.
    pub out_of_order: u64,
    /// Records Kafka holds more than once (a re-sent batch; consumers skip them).
    pub redelivered: u64,
    /// Documents (or tenants, where a sample is all there is) that differ from the store.
    pub divergent: u64,
    /// Read-model documents at an older version than seen before.
    pub regressed: u64,
    pub notes: Vec<String>,
}

impl Findings {
    pub fn lost(&self) -> u64 {
        self.lost_in_store + self.lost_in_kafka
    }

    pub fn passed(&self) -> bool {
        self.lost() == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.divergent == 0
            && self.regressed == 0
    }
}

/// A stored event as the checks need it.
#[derive(Debug, Clone)]
struct Stored {
    tenant: String,
    stream: String,
    version: u64,
    event_type: String,
}

/// The store's events, by id, read through the relay's role (the one that may read the
/// whole log).
async fn stored_events(relay_pool: &PgPool) -> Result<HashMap<Uuid, Stored>, String> {
    let store = EventStore::new(relay_pool.clone());
    let mut after = LogPosition::START;
    let mut events = HashMap::new();
    loop {
        let page = store
            .read_global_log_raw(after, 5_000)
            .await
            .map_err(|e| format!("reading the store: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in page {
            events.insert(
                event.event_id,
                Stored {
                    tenant: event.tenant_id,
                    stream: event.stream_id,
                    version: u64::try_from(event.stream_version).unwrap_or_default(),
                    event_type: event.event_type,
                },
            );
        }
    }
    Ok(events)
}

#[derive(Debug)]
pub struct Verifier {
    relay_pool: PgPool,
    projector_pool: PgPool,
    kafka_brokers: String,
    topic: String,
    projector: ProjectorConfig,
    /// Each read-model document's version when last seen.
    seen_versions: HashMap<(String, Uuid), i64>,
}

impl Verifier {
    pub fn new(relay_pool: PgPool, projector_pool: PgPool, projector: ProjectorConfig) -> Self {
        Self {
            relay_pool,
            projector_pool,
            kafka_brokers: projector.kafka_brokers.clone(),
            topic: format!("{}.customer.events", projector.topic_prefix),
            projector,
            seen_versions: HashMap::new(),
        }
    }

    pub async fn check(&mut self, ledger: &Ledger) -> Findings {
        let mut findings = Findings::default();
        let events = match stored_events(&self.relay_pool).await {
            Ok(events) => events,
            Err(error) => {
                findings.notes.push(error);
                findings.lost_in_store = u64::MAX;
                return findings;
            }
        };
        self.check_store(ledger, &events, &mut findings);
        self.check_kafka(&events, &mut findings).await;
        self.check_projections(&mut findings).await;
        self.check_regressions(ledger, &mut findings).await;
        findings
    }

    fn check_store(
        &self,
        ledger: &Ledger,
        events: &HashMap<Uuid, Stored>,
        findings: &mut Findings,
    ) {
        let stored: HashSet<(&str, &str, u64)> = events
            .values()
            .map(|e| (e.tenant.as_str(), e.stream.as_str(), e.version))
            .collect();
        let streams: Vec<String> = ledger
            .accepted
            .iter()
            .map(|a| format!("customer-{}", a.customer))
            .collect();
        for (accepted, stream) in ledger.accepted.iter().zip(&streams) {
            if !stored.contains(&(accepted.tenant.as_str(), stream.as_str(), accepted.version)) {
                findings.lost_in_store += 1;
                if findings.notes.len() < 10 {
                    findings.notes.push(format!(
                        "accepted but not stored: {} {stream} v{}",
                        accepted.tenant, accepted.version
                    ));
                }
            }
        }
        // Every customer the store registered was registered by an accepted create: a
        // create that ran twice (a retry not recognised) would leave a second one.
        let created: HashSet<(&str, String)> = ledger
            .accepted
            .iter()
            .map(|a| (a.tenant.as_str(), format!("customer-{}", a.customer)))
            .collect();
        for event in events.values() {
            if event.event_type == "CustomerRegistered"
                && !created.contains(&(event.tenant.as_str(), event.stream.clone()))
            {
                findings.duplicated += 1;
                if findings.notes.len() < 10 {
                    findings.notes.push(format!(
                        "registered but never answered 2xx: {} {}",
                        event.tenant, event.stream
                    ));
                }
            }
        }
    }

    async fn check_kafka(&self, events: &HashMap<Uuid, Stored>, findings: &mut Findings) {
        let brokers = self.kafka_brokers.clone();
        let topic = self.topic.clone();
        let read = tokio::task::spawn_blocking(move || read_topic(&brokers, &topic)).await;
        let records = match read {
            Ok(Ok(records)) => records,
            Ok(Err(error)) => {
                findings.notes.push(format!("reading Kafka: {error}"));
                findings.lost_in_kafka = u64::MAX;
                return;
            }
            Err(error) => {
                findings.notes.push(format!("reading Kafka: {error}"));
                findings.lost_in_kafka = u64::MAX;
                return;
            }
        };
        let mut seen = HashSet::new();
        let mut last_version: HashMap<&str, u64> = HashMap::new();
        for id in &records {
            if !seen.insert(*id) {
                findings.redelivered += 1;
                continue;
            }
            let Some(event) = events.get(id) else {
                continue;
            };
            let last = last_version.entry(event.stream.as_str()).or_insert(0);
            if event.version <= *last {
                findings.out_of_order += 1;
            }
            *last = event.version.max(*last);
        }
        for (id, event) in events {
            if event.stream.starts_with("customer-") && !seen.contains(id) {
                findings.lost_in_kafka += 1;
                if findings.notes.len() < 10 {
                    findings.notes.push(format!(
                        "stored but not in Kafka: {} {} v{}",
                        event.tenant, event.stream, event.version
                    ));
                }
            }
        }
    }

    async fn check_projections(&self, findings: &mut Findings) {
        match projector::replay::verify(&self.projector, registry::ALL, None).await {
            Ok(verifications) => {
                for verification in verifications {
                    for tenant in verification.mismatches() {
                        let count_gap = tenant.store.count.abs_diff(tenant.projection.count);
                        let samples = (tenant.missing.len() + tenant.extra.len()) as u64;
                        findings.divergent += count_gap.max(samples).max(1);
                        findings.notes.push(format!(
                            "{} differs for {}: store {} pairs, projection {}; missing {:?}; extra {:?}",
                            verification.projection,
                            tenant.tenant,
                            tenant.store.count,
                            tenant.projection.count,
                            tenant.missing,
                            tenant.extra
                        ));
                    }
                }
            }
            Err(error) => {
                findings
                    .notes
                    .push(format!("projector verify failed: {error}"));
                findings.divergent = u64::MAX;
            }
        }
    }

    async fn check_regressions(&mut self, ledger: &Ledger, findings: &mut Findings) {
        let tenants: BTreeMap<&str, ()> = ledger
            .accepted
            .iter()
            .map(|a| (a.tenant.as_str(), ()))
            .collect();
        for tenant in tenants.keys() {
            let Ok(rows) = read_model_versions(&self.projector_pool, tenant).await else {
                findings
                    .notes
                    .push(format!("could not read {tenant}'s read model"));
                continue;
            };
            for (customer, version) in rows {
                let key = ((*tenant).to_owned(), customer);
                let previous = self.seen_versions.insert(key, version);
                if previous.is_some_and(|previous| previous > version) {
                    findings.regressed += 1;
                }
            }
        }
    }
}

/// The read model's (customer, version) pairs of one tenant.
pub async fn read_model_versions(
    projector_pool: &PgPool,
    tenant: &str,
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let mut tx = projector_pool.begin().await?;
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(Uuid, i64)> = sqlx::query_as("SELECT customer_id, version FROM customer_views")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Every record's event id (`ce_id`) in the topic, partition by partition, in offset order.
fn read_topic(brokers: &str, topic: &str) -> Result<Vec<Uuid>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("lab-verify-{}", Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ids = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(low))
            .map_err(|e| e.to_string())?;
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        let mut next = low;
        while next < high {
            let Some(message) = consumer.poll(Duration::from_secs(10)) else {
                return Err(format!(
                    "{topic}/{partition}: no record at offset {next} within 10 s"
                ));
            };
            let message = match message {
                Ok(message) => message,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
                Err(error) => return Err(error.to_string()),
            };
            next = message.offset() + 1;
            let id = message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == "ce_id")
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| Uuid::parse_str(v).ok())
            });
            if let Some(id) = id {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}
