//! `./dev bench commands`: create-customer over HTTP with 1, 8, 32 and 64 concurrent
//! clients, against the same row inserted by PostgreSQL's own `pgbench` (prepared
//! statements, the same clients, into a table `LIKE` the event table: same columns,
//! defaults, constraints and indexes, same database, same durability) in the same run; then
//! the latency of both at half of Chronicle's highest throughput, offered open-loop (each
//! request at its scheduled time, latency counted from that time, so a stall is not hidden
//! by the clients waiting). The same inserts from Rust clients (sqlx) are measured beside
//! them, without a goal: what a client library costs, not what the database takes.
//!
//! The tenant's write limit is lifted for the run: the limiter is not what is measured.
//! `CHRONICLE_BENCH_SECONDS` (default 10) per measurement.

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use command_api::testing::TestApp;
use e2e::bench::{LoadPoint, Report, Row, env_number, percentile};
use e2e::pgbench::{self, PgbenchRun};
use event_store::testing::ScratchDatabase;
use futures_util::future::join_all;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

const CLIENTS: [usize; 4] = [1, 8, 32, 64];

/// The client counts to measure: `CHRONICLE_BENCH_CLIENTS` (comma-separated), else all.
fn client_levels() -> Vec<usize> {
    std::env::var("CHRONICLE_BENCH_CLIENTS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .filter(|levels: &Vec<usize>| !levels.is_empty())
        .unwrap_or_else(|| CLIENTS.to_vec())
}

/// What one measurement saw.
#[derive(Debug, Default)]
struct Run {
    ok: u64,
    failed: u64,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies_ms, q)
    }
}

#[tokio::main]
async fn main() {
    let seconds = env_number("CHRONICLE_BENCH_SECONDS", 10);
    let duration = Duration::from_secs(seconds);
    let levels = client_levels();
    println!(
        "commands benchmark: create-customer over HTTP vs plain inserts, {levels:?} clients, {seconds}s each"
    );
    let db = Arc::new(ScratchDatabase::create().await);
    let app = TestApp::spawn_on(db.clone(), |config| {
        config.tenant_writes_per_second = 1_000_000;
        config.tenant_write_burst = 1_000_000;
        config.login_per_account_per_minute = 1_000;
    })
    .await;
    let token = app.tenant_with_admin("bench").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let api = Api {
        url: format!("{}/v1/customers", app.base),
        token,
        client,
    };
    let baseline = Baseline::prepare(&db).await;

    // Warm the paths (connections, caches) before measuring.
    closed_loop(8, Duration::from_secs(2), |i| api.create(i)).await;
    closed_loop(8, Duration::from_secs(2), |i| baseline.insert(i)).await;
    baseline.pgbench(8, Duration::from_secs(2), None).await;

    let mut report = Report::new("commands");
    let mut peaks = Peaks::default();
    let mut failures = 0;
    println!();
    println!(
        "{:>8} {:>12} {:>12} {:>7} {:>12} {:>9} {:>9} {:>8}",
        "clients", "chronicle/s", "pgbench/s", "ratio", "sqlx ins/s", "p50 ms", "p99 ms", "non-2xx"
    );
    for clients in levels {
        let chronicle = closed_loop(clients, duration, |i| api.create(i)).await;
        let pg = baseline.pgbench(clients, duration, None).await;
        let raw = closed_loop(clients, duration, |i| baseline.insert(i)).await;
        failures += chronicle.failed;
        println!(
            "{clients:>8} {:>12.0} {:>12.0} {:>7.2} {:>12.0} {:>9.1} {:>9.1} {:>8}",
            chronicle.throughput(),
            pg.tps,
            chronicle.throughput() / pg.tps,
            raw.throughput(),
            chronicle.p(0.5),
            chronicle.p(0.99),
            chronicle.failed,
        );
        report.rows.push(Row::rate(
            &format!("create customer ÷ pgbench insert, {clients} client(s)"),
            "req/s",
            chronicle.throughput(),
            pg.tps,
            None,
        ));
        for (series, throughput, latencies) in [
            ("chronicle", chronicle.throughput(), &chronicle.latencies_ms),
            ("pgbench insert", pg.tps, &pg.latencies_ms),
        ] {
            report.load.push(LoadPoint {
                series: format!("{series} (closed loop)"),
                load: clients as f64,
                throughput,
                p50_ms: percentile(latencies, 0.5),
                p99_ms: percentile(latencies, 0.99),
            });
        }
        peaks.chronicle = peaks.chronicle.max(chronicle.throughput());
        peaks.pgbench = peaks.pgbench.max(pg.tps);
        peaks.sqlx = peaks.sqlx.max(raw.throughput());
    }

    let rate = (peaks.chronicle / 2.0).max(1.0);
    let chronicle = open_loop(rate, duration, |i| api.create(i)).await;
    let pg = baseline
        .pgbench(CLIENTS[CLIENTS.len() - 1], duration, Some(rate))
        .await;
    failures += chronicle.failed;
    println!();
    println!(
        "at half of chronicle's peak ({rate:.0}/s, open loop): chronicle p50 {:.1} ms p99 {:.1} ms; pgbench p50 {:.1} ms p99 {:.1} ms",
        chronicle.p(0.5),
        chronicle.p(0.99),
        percentile(&pg.latencies_ms, 0.5),
        percentile(&pg.latencies_ms, 0.99),
    );
    println!(
        "peak: chronicle {:.0}/s, pgbench {:.0}/s (ratio {:.2}), sqlx inserts {:.0}/s (ratio {:.2})",
        peaks.chronicle,
        peaks.pgbench,
        peaks.chronicle / peaks.pgbench,
        peaks.sqlx,
        peaks.chronicle / peaks.sqlx,
    );
    println!("non-2xx answers: {failures}");

    report.rows.insert(
        0,
        Row::rate(
            "create customer ÷ pgbench insert, peak of 1-64 clients",
            "req/s",
            peaks.chronicle,
            peaks.pgbench,
            Some(0.5),
        ),
    );
    report.rows.insert(
        1,
        Row::rate(
            "create customer ÷ sqlx-client insert, peak of 1-64 clients",
            "req/s",
            peaks.chronicle,
            peaks.sqlx,
            None,
        ),
    );
    report.rows.push(Row::latency(
        &format!("create customer p50 at half load ({rate:.0}/s)"),
        chronicle.p(0.5),
        Some(percentile(&pg.latencies_ms, 0.5)),
        None,
    ));
    report.rows.push(Row::latency(
        &format!("create customer p99 at half load ({rate:.0}/s)"),
        chronicle.p(0.99),
        Some(percentile(&pg.latencies_ms, 0.99)),
        Some(25.0),
    ));
    report
        .rows
        .push(Row::zero("create customer, non-2xx answers", failures));
    report
        .rows
        .push(Row::zero("pgbench, failed transactions", pg.failed));
    for (series, throughput, latencies) in [
        ("chronicle", chronicle.throughput(), &chronicle.latencies_ms),
        ("pgbench insert", pg.tps, &pg.latencies_ms),
    ] {
        report.load.push(LoadPoint {
            series: format!("{series} (open loop, half load)"),
            load: rate,
            throughput,
            p50_ms: percentile(latencies, 0.5),
            p99_ms: percentile(latencies, 0.99),
        });
    }
    report.write();
}

/// The highest throughput of each path over the client counts.
#[derive(Debug, Default)]
struct Peaks {
    chronicle: f64,
    pgbench: f64,
    sqlx: f64,
}

/// The API, as a client sees it.
struct Api {
    url: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    /// Registers customer `i`; true on a 2xx.
    async fn create(&self, i: u64) -> bool {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({
                "name": format!("Bench Customer {i}"),
                "email": format!("bench{i}@example.com"),
                "tags": ["bench"],
            }))
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
                true
            }
            Ok(response) => {
                eprintln!(
                    "non-2xx: {} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
                false
            }
            Err(error) => {
                eprintln!("request failed: {error}");
                false
            }
        }
    }
}

/// Plain single-row inserts of the event row the API writes, as the app role.
struct Baseline {
    pool: sqlx::PgPool,
    url: String,
}

impl Baseline {
    async fn prepare(db: &ScratchDatabase) -> Self {
        let mut owner = db.owner_connection().await;
        // The events table's columns, defaults (the identity position), constraints and
        // indexes; not its triggers or row-level security, which are Chronicle's.
        sqlx::raw_sql(
            "CREATE TABLE bench_events (LIKE events INCLUDING ALL);
             GRANT SELECT, INSERT ON bench_events TO chronicle_app;",
        )
        .execute(&mut owner)
        .await
        .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(CLIENTS[CLIENTS.len() - 1] as u32)
            .connect(&db.app_url())
            .await
            .unwrap();
        Self {
            pool,
            url: db.app_url(),
        }
    }

    /// The same row inserted by pgbench: its payload and metadata of the same size, fresh
    /// ids each time (`gen_random_uuid`, as random as the v7 ids are unique).
    async fn pgbench(&self, clients: usize, duration: Duration, rate: Option<f64>) -> PgbenchRun {
        const SCRIPT: &str = r#"\set n random(1, 2000000000)
INSERT INTO bench_events (tenant_id, stream_id, stream_version, event_id, event_type,
                          schema_version, payload, metadata)
VALUES ('bench', 'customer-' || gen_random_uuid(), 1, gen_random_uuid(), 'CustomerRegistered', 1,
        ('{"name": "Bench Customer ' || :n || '", "email": "bench' || :n || '@example.com", "tags": ["bench"]}')::jsonb,
        ('{"actor_id": "' || gen_random_uuid() || '", "actor_name": "Admin", "request_id": "' || gen_random_uuid()
          || '", "correlation_id": "' || gen_random_uuid() || '", "causation_id": "' || gen_random_uuid() || '"}')::jsonb);
"#;
        pgbench::run(&self.url, SCRIPT, clients, duration, rate).await
    }

    async fn insert(&self, i: u64) -> bool {
        let payload = json!({
            "name": format!("Bench Customer {i}"),
            "email": format!("bench{i}@example.com"),
            "tags": ["bench"],
        });
        let metadata = json!({
            "actor_id": Uuid::now_v7(), "actor_name": "Admin",
            "request_id": Uuid::now_v7().to_string(), "correlation_id": Uuid::now_v7().to_string(),
            "causation_id": Uuid::now_v7().to_string(),
        });
        sqlx::query(
            "INSERT INTO bench_events (tenant_id, stream_id, stream_version, event_id, event_type,
                                       schema_version, payload, metadata)
             VALUES ('bench', $1, 1, $2, 'CustomerRegistered', 1, $3, $4)",
        )
        .bind(format!("customer-{}", Uuid::now_v7()))
        .bind(Uuid::now_v7())
        .bind(payload)
        .bind(metadata)
        .execute(&self.pool)
        .await
        .is_ok()
    }
}

/// `clients` loops, each sending its next request when the last is answered.
async fn closed_loop<F, Fut>(clients: usize, duration: Duration, request: F) -> Run
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = bool>,
{
    let counter = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..clients).map(|_| async {
        let mut run = Run::default();
        while Instant::now() < deadline {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            if request(i).await {
                run.ok += 1;
                run.latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
            } else {
                run.failed += 1;
            }
        }
        run
    });
    let mut total = Run::default();
    for run in join_all(loops).await {
        total.ok += run.ok;
        total.failed += run.failed;
        total.latencies_ms.extend(run.latencies_ms);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.latencies_ms.sort_by(f64::total_cmp);
    total
}

/// Requests at a steady `rate`, each at its scheduled time whatever the others are doing;
/// latency counted from that time.
async fn open_loop<F, Fut>(rate: f64, duration: Duration, request: F) -> Run
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = bool>,
{
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let requests = (0..total).map(|i| {
        let scheduled = started + interval.mul_f64(i as f64);
        let request = &request;
        async move {
            tokio::time::sleep_until(scheduled.into()).await;
            let ok = request(i).await;
            (ok, scheduled.elapsed().as_secs_f64() * 1000.0)
        }
    });
    let mut run = Run::default();
    for (ok, latency) in join_all(requests).await {
        if ok {
            run.ok += 1;
            run.latencies_ms.push(latency);
        } else {
            run.failed += 1;
        }
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.latencies_ms.sort_by(f64::total_cmp);
    run
}
