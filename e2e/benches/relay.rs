//! `./dev bench relay`: events per second the relay publishes, against a plain rdkafka
//! producer sending the same records to the same broker with the same settings, in the
//! same run. Machines are shared and absolute numbers drift, so the ratio is the figure.
//!
//! `CHRONICLE_BENCH_ROUNDS` (default 3) alternating rounds of each, medians compared.
//! `CHRONICLE_BENCH_EVENTS` (default 500000) events are written to a scratch database
//! first; neither side's timing includes that, nor topic creation, nor the relay's start
//! (measured from its first checkpoint: steady state, as the baseline's producer is
//! created before its timer starts).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use e2e::bench::{Report, Row, env_number};
use event_store::testing::ScratchDatabase;
use event_store::{
    EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent, RawLogEvent, StreamId,
    TenantId,
};
use kafka_wire::KafkaRecord;
use kafka_wire::topics::create_topics;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use relay::publisher::producer_config;
use relay::testing::TestTopics;
use relay::{Relay, RelayConfig, checkpoint};
use schemas::AggregateType;
use schemas::{CustomerEvent, CustomerName, CustomerUpdated};
use service::Secret;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PARTITIONS: i32 = 12;
const STREAMS: usize = 500;

#[tokio::main]
async fn main() {
    let events = env_number("CHRONICLE_BENCH_EVENTS", 500_000) as usize;
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let log_reader = EventStore::new(db.relay_pool(2).await);
    println!(
        "relay benchmark: {events} events over {STREAMS} streams, {PARTITIONS} partitions per topic"
    );

    write_events(&store, events).await;
    let log = read_whole_log(&log_reader, events).await;
    let last = log.last().expect("events were written").position;

    // Alternating rounds, the median of each side: the machine is shared, and one side
    // measured once can catch another process's burst.
    let rounds = env_number("CHRONICLE_BENCH_ROUNDS", 3).max(1);
    let (mut relay_rates, mut baseline_rates) = (Vec::new(), Vec::new());
    println!();
    println!(
        "{:<8} {:>16} {:>16} {:>7}",
        "round", "relay events/s", "plain events/s", "ratio"
    );
    for round in 0..rounds {
        let relay_topics = TestTopics::new();
        let baseline_topics = TestTopics::new();
        for topics in [&relay_topics, &baseline_topics] {
            let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &topics.brokers)
                .create()
                .unwrap();
            let names: Vec<String> = AggregateType::names().map(|a| topics.topic(a)).collect();
            create_topics(&admin, &names, PARTITIONS, 1).await.unwrap();
        }
        let relay_name = format!("bench-{round}");
        let relay_rate = run_relay(&db, &log_reader, &relay_topics, &relay_name, last).await;
        let baseline_rate = events as f64 / run_plain_producer(&baseline_topics, &log).await;
        println!(
            "{round:<8} {relay_rate:>16.0} {baseline_rate:>16.0} {:>7.2}",
            relay_rate / baseline_rate
        );
        relay_rates.push(relay_rate);
        baseline_rates.push(baseline_rate);
    }
    let (relay_rate, baseline_rate) = (median(relay_rates), median(baseline_rates));
    println!("median: relay {relay_rate:.0}/s, plain producer {baseline_rate:.0}/s");
    println!("relay / baseline = {:.2}", relay_rate / baseline_rate);
    let mut report = Report::new("relay");
    report.rows.push(Row::rate(
        "relay: store -> kafka, checkpointed, vs plain producer",
        "events/s",
        relay_rate,
        baseline_rate,
        Some(0.8),
    ));
    report.write();
}

async fn write_events(store: &EventStore, events: usize) {
    let tenant = TenantId::parse("bench").unwrap();
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|_| StreamId::for_aggregate("customer", Uuid::now_v7()).unwrap())
        .collect();
    let started = Instant::now();
    let mut written = 0;
    while written < events {
        let size = (events - written).min(100);
        let stream = &streams[(written / 100) % STREAMS];
        let batch: Vec<NewEvent> = (0..size)
            .map(|i| {
                let update = CustomerUpdated {
                    name: Some(CustomerName::parse(&format!("Customer {i}")).unwrap()),
                    ..Default::default()
                };
                NewEvent::new(&CustomerEvent::from(update), metadata())
            })
            .collect();
        store
            .append_to_stream(&tenant, stream, ExpectedVersion::Any, batch)
            .await
            .unwrap();
        written += size;
    }
    println!(
        "wrote {events} events to the store in {:.1}s (not part of either figure)",
        started.elapsed().as_secs_f64()
    );
}

fn metadata() -> EventMetadata {
    EventMetadata {
        actor_id: Uuid::now_v7(),
        actor_name: "Bench".to_owned(),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: Uuid::now_v7().to_string(),
        causation_id: Uuid::now_v7().to_string(),
    }
}

async fn read_whole_log(store: &EventStore, events: usize) -> Vec<RawLogEvent> {
    let mut log = Vec::with_capacity(events);
    let mut after = LogPosition::START;
    while log.len() < events {
        let page = store.read_global_log_raw(after, 5_000).await.unwrap();
        match page.last() {
            Some(last) => after = last.position,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        log.extend(page);
    }
    log
}

/// Events per second the relay publishes in steady state: from its first checkpoint
/// (start-up, the leadership lock and topic checks are not throughput) until its
/// checkpoint reaches the last event. Positions count events here (a fresh database).
async fn run_relay(
    db: &ScratchDatabase,
    store: &EventStore,
    topics: &TestTopics,
    relay_name: &str,
    last: LogPosition,
) -> f64 {
    let config = RelayConfig {
        database_url: Secret::new(db.relay_url()),
        dev_mode: true,
        relay_name: relay_name.to_owned(),
        kafka_brokers: topics.brokers.clone(),
        topic_prefix: topics.prefix.clone(),
        metrics_addr: "127.0.0.1:0".to_owned(),
        topic_partitions: PARTITIONS,
        ..RelayConfig::default()
    };
    let relay = Relay::build(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    let (first, started) = loop {
        let at = checkpoint::load(store.pool(), relay_name).await.unwrap();
        if at > LogPosition::START {
            break (at.global_position, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    while checkpoint::load(store.pool(), relay_name).await.unwrap() < last {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    (last.global_position - first) as f64 / seconds
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Seconds for a plain producer with the relay's settings to have every record acknowledged.
async fn run_plain_producer(topics: &TestTopics, log: &[RawLogEvent]) -> f64 {
    let records: Vec<KafkaRecord> = log
        .iter()
        .map(|e| KafkaRecord::for_logged(&topics.prefix, e))
        .collect();
    let defaults = RelayConfig::default();
    let producer: FutureProducer = producer_config(
        &topics.brokers,
        defaults.delivery_timeout_ms,
        defaults.linger_ms,
    )
    .create()
    .unwrap();
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(records.len());
    for record in &records {
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
            match producer.send_result(future_record) {
                Ok(delivery) => {
                    in_flight.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match in_flight.pop_front() {
                        Some(oldest) => drop(oldest.await.unwrap().unwrap()),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((error, _)) => panic!("the baseline producer failed: {error}"),
            }
        }
    }
    for delivery in in_flight {
        delivery.await.unwrap().unwrap();
    }
    started.elapsed().as_secs_f64()
}
