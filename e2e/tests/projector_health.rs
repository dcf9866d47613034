//! Health tells the truth: the lag is counted from the store's head, so events the relay
//! has not published (a stopped relay, Kafka away) make the projector's health not ok once
//! nothing has moved for the stall limit, and ok again when the pipeline has caught up.

use std::time::Duration;

use event_store::EventStore;
use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{append_many, tenant};
use projector::projections::registry;
use projector::{Projector, ProjectorConfig};
use relay::Relay;
use relay::testing::TestTopics;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

async fn health(client: &reqwest::Client, addr: &str) -> (u16, Value) {
    let response = client
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the projector answers /healthz");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_relay_has_not_published_make_the_projector_not_ok() {
    let db = ScratchDatabase::create().await;
    let topics = TestTopics::new();
    let config = ProjectorConfig {
        stall_after_ms: 2_000,
        ..e2e::pipeline::projector_config(&db, &topics)
    };
    let projector = Projector::build(&config, &[registry::named("customers").unwrap()])
        .await
        .expect("the projector starts");
    let addr = projector.metrics_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(projector.run(shutdown.clone()));

    // No relay runs: these events are in the store and nowhere else.
    let store = EventStore::new(db.app_pool(2).await);
    append_many(&store, &tenant("acme"), 5, 50).await;

    let client = reqwest::Client::new();
    let body = service::eventually(Duration::from_secs(30), || async {
        match health(&client, &addr).await {
            (503, body) => Ok(body),
            (_, body) => Err(body),
        }
    })
    .await
    .unwrap_or_else(|body| panic!("ok with 50 events unpublished: {body}"));
    let customers = &body["projections"]["customers"];
    assert_eq!(customers["lag_events"], 50, "{body}");
    assert!(
        customers["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap_or_default().contains("events wait")),
        "{body}"
    );

    // The relay starts: the events flow, and health is ok again.
    let relay = Relay::build(topics.relay_config(db.relay_url()))
        .await
        .expect("the relay starts");
    let relay = tokio::spawn(relay.run(shutdown.clone()));
    service::eventually(Duration::from_secs(90), || async {
        match health(&client, &addr).await {
            // Ok while it makes progress; done when nothing waits.
            (200, body) if body["projections"]["customers"]["lag_events"] == 0 => Ok(()),
            (_, body) => Err(body),
        }
    })
    .await
    .unwrap_or_else(|body| panic!("not ok 90 s after the relay started: {body}"));

    shutdown.cancel();
    running.await.unwrap().unwrap();
    relay.await.unwrap().unwrap();
    let es = read_model::Es::new(&config.elasticsearch_url).unwrap();
    read_model::indices::remove_layout(&es, &config.index_prefix).await;
}
