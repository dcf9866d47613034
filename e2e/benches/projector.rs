//! `./dev bench projector`:
//! 1. Freshness: under a steady load of customer creations over HTTP, the time from the
//!    201 until the customer is visible in search (p50, p99, max).
//! 2. Throughput: the search projection indexing customers from Kafka, against a plain
//!    Elasticsearch `_bulk` of the same documents into the same kind of index, in the same
//!    run; reported as a ratio, since shared machines drift.
//!
//! `CHRONICLE_BENCH_RATE` (creations per second, default 20), `CHRONICLE_BENCH_SECONDS`
//! (default 15), `CHRONICLE_BENCH_EVENTS` (customers for the throughput run, default 10000).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use command_api::{ApiConfig, Application};
use event_store::testing::ScratchDatabase;
use event_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId, TenantId};
use projector::projections::{Projection, search};
use projector::testing::Pipeline;
use projector::{Projector, views};
use read_model::indices::{IndexKind, ensure_layout, remove_layout};
use schemas::{CustomerEvent, CustomerName, CustomerRegistered, EmailAddress, Tags};
use serde_json::json;
use service::Secret;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let rate = env_number("CHRONICLE_BENCH_RATE", 20);
    let seconds = env_number("CHRONICLE_BENCH_SECONDS", 15);
    let events = env_number("CHRONICLE_BENCH_EVENTS", 10_000) as usize;
    println!(
        "projector benchmark: freshness at {rate}/s for {seconds}s; throughput over {events} customers"
    );

    let freshness = freshness(rate, seconds).await;
    let (projector_seconds, bulk_seconds) = throughput(events).await;

    println!();
    println!(
        "freshness (201 -> visible in search), {} customers:",
        freshness.len()
    );
    println!(
        "  p50 {:>7.0} ms   p99 {:>7.0} ms   max {:>7.0} ms",
        percentile(&freshness, 0.50),
        percentile(&freshness, 0.99),
        percentile(&freshness, 1.0)
    );
    let projector_rate = events as f64 / projector_seconds;
    let bulk_rate = events as f64 / bulk_seconds;
    println!();
    println!("{:<52} {:>12} {:>10}", "path", "docs/s", "seconds");
    println!(
        "{:<52} {:>12.0} {:>10.2}",
        "plain elasticsearch _bulk of the same documents", bulk_rate, bulk_seconds
    );
    println!(
        "{:<52} {:>12.0} {:>10.2}",
        "search projection (kafka -> store -> elasticsearch)", projector_rate, projector_seconds
    );
    println!("projection / bulk = {:.2}", projector_rate / bulk_rate);
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[index]
}

/// Milliseconds from each creation's 201 to its first appearance in search, sorted.
async fn freshness(rate: u64, seconds: u64) -> Vec<f64> {
    let db = ScratchDatabase::create().await;
    let pipeline = Pipeline::start(&db.app_url()).await;
    let keys =
        std::env::temp_dir().join(format!("chronicle-bench-keys-{}", Uuid::now_v7().simple()));
    command_api::auth::keys::write_key_pair(&keys, "bench").unwrap();
    let config = ApiConfig {
        http_addr: "127.0.0.1:0".to_owned(),
        database_url: Secret::new(db.app_url()),
        jwt_keys_dir: keys.clone(),
        bootstrap_admin: Some(Secret::new("platform-admin:bench-admin-password")),
        index_prefix: pipeline.index_prefix().to_owned(),
        tenant_writes_per_second: 100_000,
        tenant_write_burst: 100_000,
        ..ApiConfig::default()
    };
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let client = reqwest::Client::new();

    let login = |tenant: Option<&str>, user: &str, password: &str| {
        let mut body = json!({"username": user, "password": password});
        if let Some(tenant) = tenant {
            body["tenant"] = json!(tenant);
        }
        let request = client.post(format!("{base}/v1/auth/token")).json(&body);
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let platform = login(None, "platform-admin", "bench-admin-password").await;
    client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(&platform)
        .json(&json!({"id": "bench", "name": "Bench", "admin": {"username": "admin", "password": "bench-password-1", "display_name": "Admin"}}))
        .send()
        .await
        .unwrap();
    let token = login(Some("bench"), "admin", "bench-password-1").await;

    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let polling = CancellationToken::new();
    let poller = {
        let (seen, polling, es, alias) = (
            seen.clone(),
            polling.clone(),
            pipeline.es.clone(),
            IndexKind::Customers.alias(pipeline.index_prefix()),
        );
        tokio::spawn(async move {
            while !polling.is_cancelled() {
                let query = json!({"size": 10_000, "_source": ["customer_id"], "query": {"term": {"tenant_id": "bench"}}});
                if let Ok((_, response)) = es
                    .request(
                        read_model::es::Method::Post,
                        &format!("/{alias}/_search"),
                        Some(query),
                        &[404],
                    )
                    .await
                {
                    let now = Instant::now();
                    let mut seen = seen.lock().unwrap();
                    for hit in response["hits"]["hits"].as_array().into_iter().flatten() {
                        if let Some(id) = hit["_source"]["customer_id"].as_str() {
                            seen.entry(id.to_owned()).or_insert(now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let total = rate * seconds;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut writers = Vec::new();
    for i in 0..total {
        ticks.tick().await;
        let request = client
            .post(format!("{base}/v1/customers"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Fresh Customer {i}"), "email": format!("fresh{i}@example.com")}));
        let accepted = accepted.clone();
        writers.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let at = Instant::now();
            if response.status() == reqwest::StatusCode::CREATED {
                let id = response.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                accepted.lock().unwrap().insert(id, at);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < accepted.lock().unwrap().len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    polling.cancel();
    poller.await.unwrap();
    shutdown.cancel();

    let accepted = accepted.lock().unwrap();
    let seen = seen.lock().unwrap();
    let mut latencies: Vec<f64> = accepted
        .iter()
        .filter_map(|(id, at)| {
            seen.get(id)
                .map(|visible| visible.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.len() < accepted.len() {
        println!(
            "warning: {} of {} customers never became visible",
            accepted.len() - latencies.len(),
            accepted.len()
        );
    }
    let _ = std::fs::remove_dir_all(keys);
    latencies
}

/// Seconds for the search projection to index `count` customers already in Kafka, and
/// seconds for a plain `_bulk` of the same documents.
async fn throughput(count: usize) -> (f64, f64) {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(8).await);
    let relay_only = Pipeline::start_with(&db.app_url(), &[]).await;
    let tenant = TenantId::parse("bench").unwrap();

    // Write the customers (not timed), 8 writers at once.
    let started = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (store, tenant) = (store.clone(), tenant.clone());
            tokio::spawn(async move {
                for i in (writer..count).step_by(8) {
                    let event = CustomerEvent::from(CustomerRegistered {
                        name: CustomerName::parse(&format!("Throughput Customer {i}")).unwrap(),
                        email: EmailAddress::parse(&format!("t{i}@example.com")).unwrap(),
                        phone: None,
                        address: None,
                        tags: Tags::default(),
                    });
                    let metadata = EventMetadata {
                        actor_id: Uuid::now_v7(),
                        actor_name: "Bench".to_owned(),
                        request_id: Uuid::now_v7().to_string(),
                        correlation_id: Uuid::now_v7().to_string(),
                        causation_id: Uuid::now_v7().to_string(),
                    };
                    let stream = StreamId::for_aggregate("customer", Uuid::now_v7()).unwrap();
                    store
                        .append_to_stream(
                            &tenant,
                            &stream,
                            ExpectedVersion::NoStream,
                            vec![NewEvent::new(&event, metadata)],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    println!(
        "wrote {count} customers to the store in {:.1}s (not timed)",
        started.elapsed().as_secs_f64()
    );

    // Wait until the relay has them all in Kafka (not timed).
    let consumer_check = relay_only
        .topics
        .consume_until(&["customer"], Duration::from_secs(300), move |records| {
            records.len() >= count
        })
        .await;
    assert!(
        consumer_check.len() >= count,
        "the relay did not publish everything"
    );

    let es = relay_only.es.clone();
    let alias = IndexKind::Customers.alias(relay_only.index_prefix());
    let count_docs = || {
        let (es, alias) = (es.clone(), alias.clone());
        async move {
            let _ = es.refresh(&alias).await;
            es.get(&format!("/{alias}/_count"), &[404])
                .await
                .ok()
                .and_then(|(_, c)| c["count"].as_u64())
                .unwrap_or(0) as usize
        }
    };

    // The search projection, timed from its start until every document is searchable.
    let projector = Projector::build(&relay_only.config, &[Projection::Search])
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(projector.run(shutdown.clone()));
    while count_docs().await < count {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let projector_seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = running.await;

    // The same documents, built the same way, through a plain _bulk into a twin index.
    let twin_prefix = format!("{}twin", relay_only.index_prefix());
    ensure_layout(&es, &twin_prefix).await.unwrap();
    let mut tx = store.begin(&tenant).await.unwrap();
    let envelopes = tx
        .read_streams(&all_customer_streams(&store, &tenant).await)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let twin_alias = IndexKind::Customers.alias(&twin_prefix);
    let mut lines = Vec::with_capacity(count * 2);
    for envelope in &envelopes {
        let view = views::fold(std::slice::from_ref(envelope))
            .unwrap()
            .pop()
            .unwrap();
        lines.push(search::action(&twin_alias, &view));
        lines.push(search::document(&view));
    }
    let started = Instant::now();
    for chunk in lines.chunks(1_000) {
        es.bulk(chunk.to_vec(), false).await.unwrap();
    }
    es.refresh(&twin_alias).await.unwrap();
    let bulk_seconds = started.elapsed().as_secs_f64();
    remove_layout(&es, &twin_prefix).await;
    (projector_seconds, bulk_seconds)
}

async fn all_customer_streams(store: &EventStore, tenant: &TenantId) -> Vec<StreamId> {
    let mut tx = store.begin(tenant).await.unwrap();
    let streams: Vec<String> =
        sqlx::query_scalar("SELECT stream_id FROM streams WHERE tenant_id = $1 ORDER BY stream_id")
            .bind(tenant.as_str())
            .fetch_all(tx.connection())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    streams
        .into_iter()
        .map(|s| StreamId::parse(s).unwrap())
        .collect()
}
