//! `./dev bench projector`:
//! 1. Freshness: under a steady load of customer creations over HTTP
//!    (`CHRONICLE_BENCH_RATE`/s, default 200, for `CHRONICLE_BENCH_SECONDS`, default 60),
//!    the time from each 201 until the customer is visible in search (an Elasticsearch
//!    query for the ids still pending, every 10 ms) and until the read model answers
//!    `GET /v1/customers/{id}?min_version=1` (a client's read-your-writes), p50 and p99.
//!    The relay and every projection run meanwhile, all on this machine.
//! 2. Throughput: the search projection indexing `CHRONICLE_BENCH_EVENTS` customers
//!    (default 50000) already in Kafka, against a plain Elasticsearch `_bulk` of the same
//!    documents into the same kind of index, in the same run. Both are timed in steady
//!    state: from the first document visible to the last (the consumer group's start-up is
//!    not throughput).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use command_api::testing::TestApp;
use e2e::bench::{LoadPoint, Report, Row, env_number, percentile, searchable};
use e2e::pipeline::Pipeline;
use event_store::testing::ScratchDatabase;
use event_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId, TenantId};
use projector::projections::{registry, search};
use projector::{Projector, views};
use read_model::indices::{ensure_layout, remove_layout};
use schemas::{CustomerEvent, CustomerName, CustomerRegistered, EmailAddress, Tags};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let rate = env_number("CHRONICLE_BENCH_RATE", 200);
    let seconds = env_number("CHRONICLE_BENCH_SECONDS", 60);
    let events = env_number("CHRONICLE_BENCH_EVENTS", 50_000) as usize;
    println!(
        "projector benchmark: freshness at {rate}/s for {seconds}s; throughput over {events} customers"
    );

    let fresh = freshness(rate, seconds).await;
    let (projector_rate, bulk_rate) = throughput(events).await;

    let mut report = Report::new("projector");
    println!();
    println!(
        "{:<58} {:>9} {:>9} {:>9}",
        "freshness (ms)", "p50", "p99", "max"
    );
    for (what, latencies, goal) in [
        ("201 -> visible in search", &fresh.search, (150.0, 1000.0)),
        (
            "201 -> read model (?min_version)",
            &fresh.read_model,
            (150.0, 1000.0),
        ),
    ] {
        println!(
            "{what:<58} {:>9.0} {:>9.0} {:>9.0}",
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            percentile(latencies, 1.0)
        );
        report.rows.push(Row::latency(
            &format!("freshness p50, {what}, {rate}/s"),
            percentile(latencies, 0.5),
            None,
            Some(goal.0),
        ));
        report.rows.push(Row::latency(
            &format!("freshness p99, {what}, {rate}/s"),
            percentile(latencies, 0.99),
            None,
            Some(goal.1),
        ));
        report.load.push(LoadPoint {
            series: format!("freshness, {what}"),
            load: rate as f64,
            throughput: fresh.accepted as f64 / seconds as f64,
            p50_ms: percentile(latencies, 0.5),
            p99_ms: percentile(latencies, 0.99),
        });
    }
    report.rows.push(Row::zero(
        "customers never visible in search within 60 s",
        fresh.never_searchable,
    ));
    report
        .rows
        .push(Row::zero("non-2xx answers to the writes", fresh.failed));
    println!(
        "accepted {} of {} writes; never visible in search: {}",
        fresh.accepted,
        rate * seconds,
        fresh.never_searchable
    );
    println!();
    println!("{:<58} {:>12}", "path", "docs/s");
    println!(
        "{:<58} {:>12.0}",
        "plain elasticsearch _bulk of the same documents", bulk_rate
    );
    println!(
        "{:<58} {:>12.0}",
        "search projection (kafka -> store -> elasticsearch)", projector_rate
    );
    println!("projection / bulk = {:.2}", projector_rate / bulk_rate);
    report.rows.insert(
        0,
        Row::rate(
            "search projection vs plain _bulk",
            "docs/s",
            projector_rate,
            bulk_rate,
            Some(0.7),
        ),
    );
    report.write();
}

/// What the freshness run saw.
#[derive(Debug, Default)]
struct Freshness {
    accepted: u64,
    failed: u64,
    never_searchable: u64,
    /// Milliseconds from 201 to visible in search, sorted.
    search: Vec<f64>,
    /// Milliseconds from 201 to the read model's answer at `min_version=1`, sorted.
    read_model: Vec<f64>,
}

async fn freshness(rate: u64, seconds: u64) -> Freshness {
    let db = Arc::new(ScratchDatabase::create().await);
    let pipeline = Pipeline::start(&db).await;
    let prefix = pipeline.index_prefix().to_owned();
    let app = TestApp::spawn_on(db.clone(), |config| {
        config.index_prefix = prefix;
        config.tenant_writes_per_second = 100_000;
        config.tenant_write_burst = 100_000;
    })
    .await;
    let token = app.tenant_with_admin("bench").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();

    // Accepted writes waiting to be seen in search: id -> when the 201 came.
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let search_latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let writing = CancellationToken::new();
    let poller = {
        let (pending, latencies, writing) =
            (pending.clone(), search_latencies.clone(), writing.clone());
        let (es, alias) = (
            pipeline.es.clone(),
            read_model::search::INDEX.alias(pipeline.index_prefix()),
        );
        let origin = Instant::now();
        tokio::spawn(async move {
            // After the writes stop, give the stragglers a minute.
            let mut deadline: Option<Instant> = None;
            loop {
                let ids: Vec<String> = pending.lock().unwrap().keys().cloned().collect();
                if writing.is_cancelled() {
                    let until =
                        *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(60));
                    if ids.is_empty() || Instant::now() > until {
                        return ids.len() as u64;
                    }
                }
                if !ids.is_empty()
                    && let Some(found) = searchable(&es, &alias, &ids).await
                {
                    let now = Instant::now();
                    let mut pending = pending.lock().unwrap();
                    let mut latencies = latencies.lock().unwrap();
                    for id in &found {
                        if let Some(accepted) = pending.remove(id) {
                            let latency = now.duration_since(accepted).as_secs_f64() * 1000.0;
                            if std::env::var("CHRONICLE_BENCH_TRACE").is_ok() && latency > 500.0 {
                                eprintln!(
                                    "slow: accepted at +{:.2}s, visible after {latency:.0} ms",
                                    accepted.duration_since(origin).as_secs_f64()
                                );
                            }
                            latencies.push(latency);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut writers = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
        let (client, base, token, pending) = (
            client.clone(),
            app.base.clone(),
            token.clone(),
            pending.clone(),
        );
        writers.push(tokio::spawn(async move {
            let created = client
                .post(format!("{base}/v1/customers"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("Fresh Customer {i}"), "email": format!("fresh{i}@example.com")}))
                .send()
                .await;
            let response = match created {
                Ok(response) if response.status() == reqwest::StatusCode::CREATED => response,
                Ok(response) => {
                    eprintln!("create answered {}: {}", response.status(), response.text().await.unwrap_or_default());
                    return None;
                }
                Err(error) => {
                    eprintln!("create failed: {error}");
                    return None;
                }
            };
            let accepted = Instant::now();
            let id = response.json::<serde_json::Value>().await.ok()?["id"]
                .as_str()?
                .to_owned();
            pending.lock().unwrap().insert(id.clone(), accepted);
            // Read-your-writes: the read model waits for the version it was told.
            let read = client
                .get(format!("{base}/v1/customers/{id}?min_version=1&wait_ms=30000"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            if !read.status().is_success() {
                eprintln!("read answered {}: {}", read.status(), read.text().await.unwrap_or_default());
                return None;
            }
            Some(accepted.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut fresh = Freshness::default();
    for writer in writers {
        match writer.await.unwrap() {
            Some(latency) => {
                fresh.accepted += 1;
                fresh.read_model.push(latency);
            }
            None => fresh.failed += 1,
        }
    }
    writing.cancel();
    fresh.never_searchable = poller.await.unwrap();
    fresh.search = std::mem::take(&mut *search_latencies.lock().unwrap());
    fresh.search.sort_by(f64::total_cmp);
    fresh.read_model.sort_by(f64::total_cmp);
    drop(app);
    drop(pipeline);
    fresh
}

/// Documents per second: the search projection indexing `count` customers already in
/// Kafka, and a plain `_bulk` of the same documents, each in steady state.
async fn throughput(count: usize) -> (f64, f64) {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(8).await);
    let relay_only = Pipeline::start_with(&db, &[]).await;
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
    let alias = read_model::search::INDEX.alias(relay_only.index_prefix());
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

    // The search projection, timed from its first document searchable to its last.
    let projector = Projector::build(&relay_only.config, &[registry::named("search").unwrap()])
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(projector.run(shutdown.clone()));
    let (first, started) = loop {
        let seen = count_docs().await;
        if seen > 0 {
            break (seen, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while count_docs().await < count {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let projector_rate = (count - first) as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = running.await;

    // The same documents, built the same way, through a plain _bulk into a twin index.
    let twin_prefix = format!("{}twin", relay_only.index_prefix());
    ensure_layout(&es, &twin_prefix, &registry::index_kinds())
        .await
        .unwrap();
    let mut tx = store.begin(&tenant).await.unwrap();
    let envelopes = tx
        .read_streams(&all_customer_streams(&store, &tenant).await)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let twin_alias = read_model::search::INDEX.alias(&twin_prefix);
    let mut lines = Vec::with_capacity(count * 2);
    for envelope in &envelopes {
        let view = views::fold(std::slice::from_ref(envelope))
            .unwrap()
            .pop()
            .unwrap();
        lines.push(search::action(&twin_alias, &view));
        lines.push(search::document(&view));
    }
    // Timed the same way: from the first bulk done to the last document searchable.
    let mut chunks = lines.chunks(1_000);
    let first_chunk = chunks.next().unwrap_or_default();
    es.bulk(first_chunk.to_vec(), false).await.unwrap();
    let started = Instant::now();
    for chunk in chunks {
        es.bulk(chunk.to_vec(), false).await.unwrap();
    }
    es.refresh(&twin_alias).await.unwrap();
    let bulk_rate = (count - first_chunk.len() / 2) as f64 / started.elapsed().as_secs_f64();
    remove_layout(&es, &twin_prefix).await;
    (projector_rate, bulk_rate)
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
