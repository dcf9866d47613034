//! `./dev bench replay`: a full replay of every projection (`--projection all`) over a store
//! of `CHRONICLE_BENCH_EVENTS` events (default 1,000,000: 10 events per customer, 10
//! tenants), written straight into the store, against the raw cost of writing the same
//! output in the same run: a plain Elasticsearch `_bulk` of the same documents (search,
//! history and audit, into indices with the same mappings and settings) and a plain
//! PostgreSQL `COPY` of the same read-model rows. The baseline times only those writes;
//! the replay's time includes reading the log, folding, the swap and the catch-up
//! (verification is timed on its own).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::bench::{Report, Row, env_number};
use event_store::testing::ScratchDatabase;
use event_store::{
    EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent, StreamId, TenantId,
};
use projector::ProjectorConfig;
use projector::projections::customers::rows::copy_views;
use projector::projections::{audit, history, registry, search};
use projector::replay::progress::ProgressMode;
use projector::replay::{self, ReplayOptions};
use projector::views::{self, CustomerView};
use read_model::Es;
use read_model::indices::{ensure_layout, remove_layout};
use schemas::{
    CustomerEvent, CustomerName, CustomerRegistered, CustomerUpdated, EmailAddress, Tags,
};
use serde_json::{Value, json};
use service::Secret;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const EVENTS_PER_CUSTOMER: usize = 10;
const TENANTS: usize = 10;
const BULK_DOCS: usize = 5000;

fn metadata() -> EventMetadata {
    EventMetadata {
        actor_id: Uuid::now_v7(),
        actor_name: "Bench".to_owned(),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: Uuid::now_v7().to_string(),
        causation_id: Uuid::now_v7().to_string(),
    }
}

/// One customer's events: a registration and nine updates of various fields.
fn customer_events(i: usize) -> Vec<NewEvent> {
    let mut events = vec![CustomerEvent::from(CustomerRegistered {
        name: CustomerName::parse(&format!("Replay Customer {i}")).unwrap(),
        email: EmailAddress::parse(&format!("c{i}@example.com")).unwrap(),
        phone: None,
        address: None,
        tags: Tags::parse(["bench"]).unwrap(),
    })];
    for version in 2..=EVENTS_PER_CUSTOMER {
        let update = match version % 3 {
            0 => CustomerUpdated {
                name: Some(
                    CustomerName::parse(&format!("Replay Customer {i} v{version}")).unwrap(),
                ),
                ..CustomerUpdated::default()
            },
            1 => CustomerUpdated {
                email: Some(EmailAddress::parse(&format!("c{i}.v{version}@example.com")).unwrap()),
                ..CustomerUpdated::default()
            },
            _ => CustomerUpdated {
                tags: Some(Tags::parse(["bench", &format!("v{version}")]).unwrap()),
                ..CustomerUpdated::default()
            },
        };
        events.push(CustomerEvent::from(update));
    }
    events
        .iter()
        .map(|event| NewEvent::new(event, metadata()))
        .collect()
}

#[tokio::main]
async fn main() {
    let events = env_number("CHRONICLE_BENCH_EVENTS", 1_000_000) as usize;
    let customers = events.div_ceil(EVENTS_PER_CUSTOMER);
    let events = customers * EVENTS_PER_CUSTOMER;
    println!(
        "replay benchmark: {events} events ({customers} customers x {EVENTS_PER_CUSTOMER}, {TENANTS} tenants), --projection all"
    );

    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(8).await);
    let started = Instant::now();
    let writers_done: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (writer..customers).step_by(8) {
                    let tenant = TenantId::parse(format!("tenant-{}", i % TENANTS)).unwrap();
                    let stream = StreamId::for_aggregate("customer", Uuid::now_v7()).unwrap();
                    store
                        .append_to_stream(
                            &tenant,
                            &stream,
                            ExpectedVersion::NoStream,
                            customer_events(i),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers_done {
        writer.await.unwrap();
    }
    println!(
        "wrote {events} events to the store in {:.1}s (not timed)",
        started.elapsed().as_secs_f64()
    );

    let prefix = format!(
        "bench-replay-{}",
        &Uuid::now_v7().simple().to_string()[24..]
    );
    let config = ProjectorConfig {
        database_url: Secret::new(db.projector_url()),
        dev_mode: true,
        database_admin_url: Secret::new(db.admin_url()),
        elasticsearch_url: event_store::testing::env_url("ELASTICSEARCH_URL"),
        index_prefix: prefix.clone(),
        verify_attempts: 3,
        ..ProjectorConfig::default()
    };
    let es = Es::new(&config.elasticsearch_url).unwrap();
    ensure_layout(&es, &prefix, &registry::index_kinds())
        .await
        .unwrap();

    // The replay.
    let started = Instant::now();
    let report = replay::replay(
        &config,
        &ReplayOptions {
            projections: registry::ALL.to_vec(),
            tenant: None,
            dry_run: false,
            verify: false,
            progress: ProgressMode::Auto,
        },
    )
    .await
    .expect("the replay runs");
    let replay_seconds = started.elapsed().as_secs_f64();
    assert_eq!(report.events_read as usize, events, "every event read");
    let started = Instant::now();
    let verification = replay::verify(&config, registry::ALL, None).await.unwrap();
    let verify_seconds = started.elapsed().as_secs_f64();
    assert!(verification.iter().all(|v| v.passed()), "{verification:#?}");

    // The baselines: the same documents, written plainly (only the writes are timed).
    let log_reader = EventStore::new(db.projector_pool(2).await);
    let baseline = baseline(&log_reader, &es, &prefix, &db).await;
    assert_eq!(baseline.rows as u64, report.documents_written["customers"]);
    let written_docs: u64 = ["search", "history", "audit"]
        .iter()
        .map(|p| report.documents_written[p])
        .sum();
    assert_eq!(baseline.docs as u64, written_docs, "the same documents");

    let rate = |n: usize, seconds: f64| n as f64 / seconds;
    let plain_seconds = baseline.bulk_seconds + baseline.copy_seconds;
    println!();
    println!("{:<62} {:>12} {:>10}", "path", "per second", "seconds");
    println!(
        "{:<62} {:>12.0} {:>10.2}",
        format!(
            "plain elasticsearch _bulk, {} documents (docs/s)",
            baseline.docs
        ),
        rate(baseline.docs, baseline.bulk_seconds),
        baseline.bulk_seconds
    );
    println!(
        "{:<62} {:>12.0} {:>10.2}",
        format!("plain postgresql COPY, {} rows (rows/s)", baseline.rows),
        rate(baseline.rows, baseline.copy_seconds),
        baseline.copy_seconds
    );
    println!(
        "{:<62} {:>12.0} {:>10.2}",
        "plain writes of the whole output (events/s equivalent)",
        rate(events, plain_seconds),
        plain_seconds
    );
    println!(
        "{:<62} {:>12.0} {:>10.2}",
        "projector replay --projection all (events/s)",
        rate(events, replay_seconds),
        replay_seconds
    );
    println!(
        "{:<62} {:>12} {:>10.2}",
        "  then verification of every tenant, all four projections", "", verify_seconds
    );
    println!(
        "replay / plain _bulk alone = {:.2}",
        baseline.bulk_seconds / replay_seconds
    );
    println!(
        "replay / plain COPY alone  = {:.2}",
        baseline.copy_seconds / replay_seconds
    );
    println!(
        "replay / plain writes (_bulk + COPY) = {:.2}",
        plain_seconds / replay_seconds
    );
    let mut summary = Report::new("replay");
    summary.rows.push(Row::rate(
        &format!("replay --projection all, {events} events, vs plain _bulk + COPY"),
        "events/s",
        rate(events, replay_seconds),
        rate(events, plain_seconds),
        Some(0.9),
    ));
    summary.notes.push(format!(
        "verification of every tenant and projection afterwards: {verify_seconds:.1} s"
    ));
    summary.write();

    remove_layout(&es, &prefix).await;
}

struct Baseline {
    docs: usize,
    rows: usize,
    bulk_seconds: f64,
    copy_seconds: f64,
}

/// Builds the replay's documents from the log (not timed) and times plain writes of them.
async fn baseline(store: &EventStore, es: &Es, prefix: &str, db: &ScratchDatabase) -> Baseline {
    let mut indices = HashMap::new();
    for kind in registry::index_kinds() {
        let index = kind.index(prefix, "baseline");
        es.put(
            &format!("/{index}"),
            json!({ "settings": { "index": { "refresh_interval": "-1", "number_of_replicas": 0 } } }),
        )
        .await
        .unwrap();
        indices.insert(kind, index);
    }
    let mut bulk = Duration::ZERO;
    let mut docs = 0;
    let mut lines: Vec<Value> = Vec::new();
    let mut views: HashMap<StreamId, CustomerView> = HashMap::new();
    let mut position = LogPosition::START;
    loop {
        let page = store.read_global_log(position, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        position = last.position;
        for logged in &page {
            let envelope = &logged.event;
            let (action, document) = audit::document(&indices[&read_model::audit::INDEX], envelope);
            lines.extend([action, document]);
            let previous = views.get(&envelope.stream_id);
            let next = views::step(previous, envelope).unwrap().unwrap();
            let entry = views::history_entry(previous, &next, envelope);
            let (action, document) = history::document(
                &indices[&read_model::history::INDEX],
                envelope.tenant_id.as_str(),
                envelope.stream_id.as_str(),
                &entry,
            );
            lines.extend([action, document]);
            docs += 2;
            views.insert(envelope.stream_id.clone(), next);
            if lines.len() / 2 >= BULK_DOCS {
                bulk += timed_bulk(es, &mut lines).await;
            }
        }
    }
    for view in views.values() {
        lines.extend([
            search::action(&indices[&read_model::search::INDEX], view),
            search::document(view),
        ]);
        docs += 1;
        if lines.len() / 2 >= BULK_DOCS {
            bulk += timed_bulk(es, &mut lines).await;
        }
    }
    bulk += timed_bulk(es, &mut lines).await;
    let started = Instant::now();
    for index in indices.values() {
        es.refresh(index).await.unwrap();
    }
    bulk += started.elapsed();

    let mut owner = PgConnection::connect(&db.admin_url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE bench_copy (LIKE customer_views INCLUDING ALL)")
        .execute(&mut owner)
        .await
        .unwrap();
    let rows: Vec<&CustomerView> = views.values().collect();
    let started = Instant::now();
    let copied = copy_views(&mut owner, "bench_copy", &rows).await.unwrap();
    let copy_seconds = started.elapsed().as_secs_f64();
    assert_eq!(copied as usize, rows.len());
    Baseline {
        docs,
        rows: rows.len(),
        bulk_seconds: bulk.as_secs_f64(),
        copy_seconds,
    }
}

/// One plain `_bulk` of what is queued; its duration.
async fn timed_bulk(es: &Es, lines: &mut Vec<Value>) -> Duration {
    if lines.is_empty() {
        return Duration::ZERO;
    }
    let started = Instant::now();
    let items = es.bulk(std::mem::take(lines), false).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        items
            .iter()
            .all(|i| i["index"]["status"].as_u64().is_some_and(|s| s < 300)),
        "the baseline documents are indexed"
    );
    elapsed
}
