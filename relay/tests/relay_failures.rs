//! The relay under failure: killed mid-batch, Kafka gone for 30 seconds, two instances.
//! Nothing may be missing afterwards; redeliveries are allowed, counted and reported.

// These tests report what they observed (redeliveries, takeover time) on stdout.
#![allow(clippy::print_stdout)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{append_many, customer_stream, registered, tenant};
use event_store::{EventStore, ExpectedVersion};
use relay::testing::{DedicatedKafka, TestTopics};
use relay::{Relay, RelayConfig};
use support::{RelayProcess, assert_complete_and_ordered, http_get, metric};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn consume_all(
    topics: &TestTopics,
    expected: &HashSet<Uuid>,
    timeout: Duration,
) -> Vec<relay::testing::ConsumedRecord> {
    let expected = expected.clone();
    topics
        .consume_until(&["customer"], timeout, move |records| {
            let seen: HashSet<Uuid> = records.iter().map(|r| r.event.event_id).collect();
            expected.is_subset(&seen)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_and_restarted_loses_nothing() {
    const BATCH: u32 = 500;
    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let store = EventStore::new(db.app_pool(2).await);
    let ids: HashSet<Uuid> = append_many(&store, &tenant("acme"), 50, 20_000)
        .await
        .into_iter()
        .collect();

    let mut relay = RelayProcess::spawn(&db.relay_url(), &topics.brokers, &topics.prefix, BATCH);
    let partial = topics
        .consume_until(&["customer"], Duration::from_secs(60), |r| r.len() >= 3_000)
        .await;
    relay.kill();
    assert!(
        partial.len() >= 3_000,
        "the relay published too little before the kill:\n{}",
        relay.log_tail()
    );
    let published_before_kill: HashSet<Uuid> = partial.iter().map(|r| r.event.event_id).collect();
    println!(
        "killed the relay (SIGKILL) once at least {} of {} events had reached Kafka",
        published_before_kill.len(),
        ids.len()
    );

    let restarted = RelayProcess::spawn(&db.relay_url(), &topics.brokers, &topics.prefix, BATCH);
    let records = consume_all(&topics, &ids, Duration::from_secs(120)).await;
    let duplicates = assert_complete_and_ordered(&records, &ids);
    println!(
        "after the restart: all {} events in Kafka, {duplicates} redelivered",
        ids.len()
    );
    // The restart resumed from the checkpoint: at most the pages in flight at the kill
    // (the relay keeps several with Kafka while it reads the next) went out twice, not
    // everything from the start.
    let in_flight = RelayConfig::default().pages_in_flight + 1;
    assert!(
        duplicates <= in_flight * BATCH as usize,
        "{duplicates} redeliveries: the checkpoint was not used\n{}",
        restarted.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stopped_for_thirty_seconds_while_writes_go_on_loses_nothing() {
    let mut broker = DedicatedKafka::start().await;
    let db = ScratchDatabase::create().await;
    let topics = TestTopics::on(broker.bootstrap());
    let store = EventStore::new(db.app_pool(4).await);
    let config = RelayConfig {
        // Short, so the outage surfaces as failed batches the relay must retry.
        delivery_timeout_ms: 5_000,
        // Short, so health must say the relay is stuck well within the outage.
        stall_after_ms: 5_000,
        ..topics.relay_config(db.relay_url())
    };
    let relay = Relay::build(config).await.unwrap();
    let metrics_addr = relay.metrics_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));

    // Commands keep coming the whole time: one append every 50 ms for ~40 s.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let acme = tenant("acme");
            let started = Instant::now();
            let mut ids = Vec::new();
            while started.elapsed() < Duration::from_secs(40) {
                let event = registered("Written during the outage");
                ids.push(event.event_id);
                store
                    .append_to_stream(
                        &acme,
                        &customer_stream(),
                        ExpectedVersion::NoStream,
                        vec![event],
                    )
                    .await
                    .expect("appends succeed while Kafka is down");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ids
        })
    };

    // Kafka goes away once the relay is publishing to it.
    service::eventually(Duration::from_secs(30), || async {
        let (_, body) = http_get(&metrics_addr, "/metrics").await.unwrap();
        match metric(&body, "chronicle_relay_published_events_total") {
            Some(published) if published > 0.0 => Ok(()),
            published => Err(published),
        }
    })
    .await
    .unwrap_or_else(|published| {
        panic!("the relay published nothing before the outage: published {published:?}")
    });
    broker.stop().await;
    let stopped_at = Instant::now();
    // The outage itself: thirty seconds of Kafka away while the writes go on.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (_, body) = http_get(&metrics_addr, "/metrics").await.unwrap();
    let lag_during_outage = metric(&body, "chronicle_relay_lag_events").unwrap_or(0.0);
    // Health tells the truth: events wait, nothing moves, so the relay is not ok.
    let (status, health) = http_get(&metrics_addr, "/healthz").await.unwrap();
    assert_eq!(status, 503, "healthy with Kafka away for 30 s: {health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "failing", "{health}");
    assert!(
        health["lag_events"].as_f64().unwrap_or(0.0) > 0.0,
        "{health}"
    );
    broker.resume().await;
    println!(
        "kafka was down for {:.1}s; lag at the end of the outage: {lag_during_outage} events",
        stopped_at.elapsed().as_secs_f64()
    );

    let resumed_at = Instant::now();
    let ids: HashSet<Uuid> = writer.await.unwrap().into_iter().collect();
    let records = consume_all(&topics, &ids, Duration::from_secs(120)).await;
    println!(
        "the last event reached Kafka {:.1}s after the broker came back",
        resumed_at.elapsed().as_secs_f64()
    );
    // And ok again once the backlog is out.
    service::eventually(Duration::from_secs(30), || async {
        match http_get(&metrics_addr, "/healthz").await.unwrap() {
            (200, _) => Ok(()),
            (_, health) => Err(health),
        }
    })
    .await
    .unwrap_or_else(|health| panic!("still not ok after recovery: {health}"));
    let duplicates = assert_complete_and_ordered(&records, &ids);
    let (_, body) = http_get(&metrics_addr, "/metrics").await.unwrap();
    let failures = metric(&body, "chronicle_relay_publish_failures_total").unwrap_or(0.0);
    println!(
        "all {} events in Kafka after the outage; {duplicates} redelivered; {failures} failed batches retried",
        ids.len()
    );
    assert!(
        lag_during_outage > 0.0,
        "the outage did not hold anything back: the test proved nothing"
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    drop(topics);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_relay_publishes_and_a_standby_takes_over_when_it_dies() {
    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let store = EventStore::new(db.app_pool(2).await);
    let relays = [
        RelayProcess::spawn(&db.relay_url(), &topics.brokers, &topics.prefix, 100),
        RelayProcess::spawn(&db.relay_url(), &topics.brokers, &topics.prefix, 100),
    ];

    let roles = wait_for_roles(&relays, Duration::from_secs(30)).await;
    let active = roles
        .iter()
        .position(|r| r == "active")
        .expect("one relay is active");
    let standby = 1 - active;
    assert_eq!(
        roles[standby], "standby",
        "both relays claim to publish: {roles:?}"
    );

    let first: HashSet<Uuid> = append_many(&store, &tenant("acme"), 10, 300)
        .await
        .into_iter()
        .collect();
    let records = consume_all(&topics, &first, Duration::from_secs(60)).await;
    assert_complete_and_ordered(&records, &first);
    assert_eq!(
        relays[standby].published().await,
        Some(0.0),
        "the standby published"
    );
    assert!(relays[active].published().await.unwrap_or(0.0) >= 300.0);

    let [mut a, mut b] = relays;
    let (dying, survivor) = if active == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    dying.kill();
    let killed_at = Instant::now();
    let survivor = &*survivor;
    service::eventually(Duration::from_secs(20), || async {
        match survivor.role().await {
            Some(role) if role == "active" => Ok(()),
            role => Err(role),
        }
    })
    .await
    .unwrap_or_else(|role| {
        panic!(
            "the standby did not take over (role {role:?}):\n{}",
            survivor.log_tail()
        )
    });
    println!(
        "the standby took over {:.1}s after the active relay was killed",
        killed_at.elapsed().as_secs_f64()
    );

    let second: HashSet<Uuid> = append_many(&store, &tenant("acme"), 10, 300)
        .await
        .into_iter()
        .collect();
    let all: HashSet<Uuid> = first.union(&second).copied().collect();
    let records = consume_all(&topics, &all, Duration::from_secs(60)).await;
    let duplicates = assert_complete_and_ordered(&records, &all);
    println!(
        "all {} events in Kafka across the takeover, {duplicates} redelivered",
        all.len()
    );
}

async fn wait_for_roles(relays: &[RelayProcess; 2], timeout: Duration) -> Vec<String> {
    service::eventually(timeout, || async {
        match [relays[0].role().await, relays[1].role().await] {
            [Some(a), Some(b)] if a == "active" || b == "active" => Ok(vec![a, b]),
            roles => Err(roles),
        }
    })
    .await
    .unwrap_or_else(|roles| {
        panic!(
            "relays did not come up: {roles:?}\n{}\n{}",
            relays[0].log_tail(),
            relays[1].log_tail()
        )
    })
}
