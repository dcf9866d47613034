//! The relay publishes every event to Kafka, in order per stream, as the contract's
//! CloudEvents records, partitioned as Java clients partition.

// These tests report what they observed (redeliveries, takeover time) on stdout.
#![allow(clippy::print_stdout)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{customer_stream, metadata, registered, renamed, tenant};
use event_store::{EventStore, ExpectedVersion, NewEvent, StreamId};
use relay::testing::TestTopics;
use relay::{Relay, RelayConfig};
use schemas::{TenantEvent, TenantName, TenantRegistered};
use support::{assert_complete_and_ordered, http_get, java_partition, metric};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PARTITIONS: i32 = 12;

fn relay_config(db: &ScratchDatabase, topics: &TestTopics) -> RelayConfig {
    RelayConfig {
        topic_partitions: PARTITIONS,
        ..topics.relay_config(db.relay_url())
    }
}

#[test]
fn murmur2_matches_the_java_client() {
    // Values computed by org.apache.kafka.common.utils.Utils#murmur2 (kafka-clients 4.1).
    assert_eq!(support::murmur2(b"21"), -973_932_308);
    assert_eq!(support::murmur2(b"foobar"), -790_332_482);
    assert_eq!(support::murmur2(b"a-little-bit-long-string"), -985_981_536);
    assert_eq!(
        support::murmur2(b"a-little-bit-longer-string"),
        -1_486_304_829
    );
    assert_eq!(
        support::murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        -58_897_971
    );
    assert_eq!(support::murmur2(b"abc"), 479_470_107);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_late_commits_all_reach_kafka_in_stream_order() {
    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let store = EventStore::new(db.app_pool(34).await);
    let relay = Relay::build(relay_config(&db, &topics)).await.unwrap();
    let metrics_addr = relay.metrics_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));

    // Tenant registrations go to their own topic.
    let mut committed: HashSet<Uuid> = HashSet::new();
    for name in ["acme", "globex"] {
        let event = NewEvent::new(
            &TenantEvent::from(TenantRegistered {
                name: TenantName::parse(name).unwrap(),
                pending: false,
            }),
            metadata(),
        );
        committed.insert(event.event_id);
        let stream = StreamId::for_aggregate("tenant", name).unwrap();
        store
            .append_to_stream(
                &tenant(name),
                &stream,
                ExpectedVersion::NoStream,
                vec![event],
            )
            .await
            .unwrap();
    }

    // 32 writers whose transactions commit after a random delay, some rolling back.
    let writers: Vec<_> = (0..32)
        .map(|writer| {
            let store = store.clone();
            let tenant = tenant(if writer % 2 == 0 { "acme" } else { "globex" });
            tokio::spawn(async move {
                let stream = customer_stream();
                let mut committed = Vec::new();
                for round in 0..8 {
                    let events: Vec<NewEvent> = if round == 0 {
                        vec![registered(&format!("Writer {writer}"))]
                    } else {
                        (0..1 + fastrand::usize(..3))
                            .map(|i| renamed(&format!("W{writer} R{round} E{i}")))
                            .collect()
                    };
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    let mut tx = store.begin(&tenant).await.unwrap();
                    tx.append_to_stream(&stream, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(..40))).await;
                    if round > 0 && fastrand::usize(..7) == 0 {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        committed.extend(ids);
                    }
                }
                committed
            })
        })
        .collect();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }

    let expected = committed.clone();
    let records = topics
        .consume_until(
            &["tenant", "customer"],
            Duration::from_secs(90),
            move |records| {
                let seen: HashSet<Uuid> = records.iter().map(|r| r.event.event_id).collect();
                expected.is_subset(&seen)
            },
        )
        .await;
    let duplicates = assert_complete_and_ordered(&records, &committed);
    println!(
        "{} events published, {duplicates} redelivered",
        committed.len()
    );

    for record in &records {
        let event = &record.event;
        let aggregate = event.stream_id.category();
        assert_eq!(record.topic, topics.topic(aggregate));
        assert_eq!(
            record.key,
            event.stream_id.as_str(),
            "the key is the stream id"
        );
        assert_eq!(
            record.partition,
            java_partition(record.key.as_bytes(), PARTITIONS),
            "murmur2 partitioning"
        );
        let header = |name: &str| record.headers.get(name).map(String::as_str);
        assert_eq!(header("ce_specversion"), Some("1.0"));
        assert_eq!(header("ce_id"), Some(event.event_id.to_string().as_str()));
        assert_eq!(
            header("ce_source"),
            Some(format!("/tenants/{}/{aggregate}", event.tenant_id).as_str())
        );
        assert_eq!(header("ce_type"), Some(event.event_type.as_str()));
        assert_eq!(header("ce_subject"), Some(event.stream_id.as_str()));
        assert_eq!(header("ce_tenantid"), Some(event.tenant_id.as_str()));
        assert_eq!(header("ce_partitionkey"), Some(event.stream_id.as_str()));
        assert_eq!(header("content-type"), Some("application/json"));
        let time = chrono::DateTime::parse_from_rfc3339(header("ce_time").unwrap()).unwrap();
        assert_eq!(time, event.recorded_at);
    }

    // The relay reports what it did, and that it is caught up.
    let published = service::eventually(Duration::from_secs(10), || async {
        let (status, body) = http_get(&metrics_addr, "/metrics").await.unwrap();
        assert_eq!(status, 200);
        let published = metric(&body, "chronicle_relay_published_events_total").unwrap();
        let lag = metric(&body, "chronicle_relay_lag_events").unwrap();
        if lag == 0.0 { Ok(published) } else { Err(lag) }
    })
    .await
    .unwrap_or_else(|lag| panic!("the relay reports lag after catching up: {lag} events"));
    assert!(published >= committed.len() as f64);
    let (status, health) = http_get(&metrics_addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    assert!(health.contains("\"role\":\"active\""), "{health}");

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn topics_are_created_with_explicit_partitions_and_unlimited_retention() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let store = EventStore::new(db.app_pool(2).await);
    let relay = Relay::build(relay_config(&db, &topics)).await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    let event = registered("Topic Check");
    let id = event.event_id;
    store
        .append_to_stream(
            &tenant("acme"),
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await
        .unwrap();
    let records = topics
        .consume_until(&["customer"], Duration::from_secs(60), move |r| {
            r.iter().any(|r| r.event.event_id == id)
        })
        .await;
    assert_eq!(records.len(), 1);

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &topics.brokers)
        .create()
        .unwrap();
    for aggregate in schemas::AggregateType::names() {
        let name = topics.topic(aggregate);
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            metadata.topics()[0].partitions().len(),
            PARTITIONS as usize,
            "{name}"
        );
        let configs = admin
            .describe_configs(&[ResourceSpecifier::Topic(&name)], &AdminOptions::new())
            .await
            .unwrap();
        let config = configs[0].as_ref().unwrap();
        let value = |key: &str| config.get(key).and_then(|entry| entry.value.clone());
        assert_eq!(value("retention.ms").as_deref(), Some("-1"), "{name}");
        assert_eq!(value("retention.bytes").as_deref(), Some("-1"), "{name}");
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_relay_is_woken_by_the_commit_not_by_polling() {
    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let store = EventStore::new(db.app_pool(2).await);
    // Idle after half a second, then polling once a minute: only the notification can
    // deliver within seconds.
    let config = RelayConfig {
        idle_after_ms: 500,
        idle_poll_ms: 60_000,
        ..relay_config(&db, &topics)
    };
    let relay = Relay::build(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));

    // Let it find the log empty and go idle: it asks appends to notify it. (It reads once
    // more after asking: an append in that moment is found by that read, which makes the
    // test prove less, never fail.)
    service::eventually(Duration::from_secs(10), || async {
        let listening: bool = sqlx::query_scalar("SELECT listening FROM relay_wakeup")
            .fetch_one(store.pool())
            .await
            .unwrap();
        if listening { Ok(()) } else { Err(listening) }
    })
    .await
    .expect("the relay went idle and asked to be notified");
    let event = registered("Wake Up");
    let id = event.event_id;
    store
        .append_to_stream(
            &tenant("acme"),
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await
        .unwrap();
    let records = topics
        .consume_until(&["customer"], Duration::from_secs(30), move |r| {
            r.iter().any(|r| r.event.event_id == id)
        })
        .await;
    assert_eq!(
        records.len(),
        1,
        "the idle relay was not woken by the append"
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_event_too_large_for_its_topic_goes_out_as_a_reference_and_nothing_stalls() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let store = EventStore::new(db.app_pool(2).await);
    // A topic that takes records of at most 20 KB (a broker or topic configured tighter
    // than the relay's producer): the event below is refused whole, which stalled every
    // event behind it.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &topics.brokers)
        .create()
        .unwrap();
    let name = topics.topic("customer");
    let tight = NewTopic::new(&name, 3, TopicReplication::Fixed(1))
        .set("max.message.bytes", "20000")
        .set("retention.ms", "-1");
    admin
        .create_topics(&[tight], &AdminOptions::new())
        .await
        .unwrap()
        .into_iter()
        .for_each(|result| {
            result.unwrap();
        });

    let relay = Relay::build(relay_config(&db, &topics)).await.unwrap();
    let metrics_addr = relay.metrics_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));

    let stream = customer_stream();
    let big = NewEvent {
        payload: serde_json::json!({"name": "B".repeat(60_000), "email": "big@example.com"}),
        ..renamed("Big")
    };
    let (first, big_id, after) = (registered("Before"), big.event_id, renamed("After"));
    let (first_id, after_id) = (first.event_id, after.event_id);
    store
        .append_to_stream(
            &tenant("acme"),
            &stream,
            ExpectedVersion::NoStream,
            vec![first, big, after],
        )
        .await
        .unwrap();
    let records = topics
        .consume_until(&["customer"], Duration::from_secs(60), move |r| {
            r.iter().any(|r| r.event.event_id == after_id)
        })
        .await;
    let mut ours: Vec<_> = records
        .iter()
        .filter(|r| r.key == stream.as_str())
        .collect();
    ours.sort_by_key(|r| r.offset);
    let ids: Vec<Uuid> = ours.iter().map(|r| r.event.event_id).collect();
    assert_eq!(
        ids,
        [first_id, big_id, after_id],
        "in stream order, none skipped"
    );
    let reference = ours[1];
    assert_eq!(
        reference.headers.get("ce_dataref").map(String::as_str),
        Some(format!("/tenants/acme/streams/{stream}/versions/2").as_str())
    );
    assert!(
        reference.event.payload.is_null(),
        "the payload stays in the store"
    );
    assert_eq!(reference.event.stream_version, 2);
    assert!(!ours[0].headers.contains_key("ce_dataref"));
    assert!(!ours[2].event.payload.is_null());

    let (_, metrics) = http_get(&metrics_addr, "/metrics").await.unwrap();
    assert_eq!(
        metric(&metrics, "chronicle_relay_oversized_events_total"),
        Some(1.0)
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
