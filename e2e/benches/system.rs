//! `./dev bench system`: the whole system as `./dev up` runs it (the API, the relay and
//! the projector, release binaries, one process each) under an open-loop offered load over
//! several tenants, stepped up until it no longer holds. Each step offers `rate` commands
//! per second: creates, and patches (with `If-Match`) of customers created earlier, and
//! after every other command a read-your-writes read (`GET ?min_version`). Per step: p50
//! and p99 of each kind of answer, the freshness to search (from a create's 201 until an
//! Elasticsearch query finds it) and to the read model (from a command's 2xx until its
//! read answers), and every answer that was not 2xx.
//!
//! A step holds when p99 create < 25 ms, p99 freshness to search < 1 s and every answer was
//! 2xx. The highest rate that holds is reported against the commands-only peak of the same
//! API process, measured in the same run with the relay and the projector stopped (closed
//! loop, 32 and 64 clients): the goal is >= 0.5, the pipeline behind the API costing at
//! most half of what the API alone takes.
//!
//! The tenants' write limit is lifted (as `./dev chaos` does): the limiter is not what is
//! measured. `CHRONICLE_BENCH_SECONDS` (default 10) per step, `CHRONICLE_BENCH_TENANTS`
//! (default 4), `CHRONICLE_LAB_BIN_DIR` (default `target/release`).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::bench::{LoadPoint, Report, Row, env_number, percentile, searchable};
use e2e::lab::cluster::{Cluster, ClusterSpec, Kind};
use e2e::lab::load::register_writers;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The offered rates, commands per second, tried in order until two in a row do not hold.
const RATES: [u64; 13] = [
    100, 150, 200, 300, 400, 550, 750, 1000, 1300, 1700, 2200, 2800, 3500,
];
/// What a step must hold.
const CREATE_P99_MS: f64 = 25.0;
const SEARCH_P99_MS: f64 = 1000.0;
/// How long a step's creates may take to become searchable before they count as never.
const SEARCH_GRACE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let step = Duration::from_secs(env_number("CHRONICLE_BENCH_SECONDS", 10));
    let tenants = env_number("CHRONICLE_BENCH_TENANTS", 4) as usize;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = std::env::var_os("CHRONICLE_LAB_BIN_DIR")
        .map_or_else(|| root.join("target/release"), PathBuf::from);
    println!(
        "system benchmark: API + relay + projector ({}), {tenants} tenants, {}s per step",
        bin_dir.display(),
        step.as_secs()
    );
    let mut cluster = Cluster::start(&ClusterSpec {
        apis: 1,
        relays: 1,
        projectors: 1,
        bin_dir,
        log_dir: root.join(".chronicle/logs/bench-system"),
        env: Vec::new(),
    })
    .await;
    let api = cluster.api_urls().remove(0);
    let load = Arc::new(Load::start(&api, tenants).await);
    let search = SearchWatch::start(&cluster);

    println!();
    println!(
        "{:>7} {:>8} {:>16} {:>16} {:>16} {:>18} {:>18} {:>8} {:>5}",
        "offered",
        "held/s",
        "create p50/p99",
        "patch p50/p99",
        "read p50/p99",
        "search fresh p50/99",
        "model fresh p50/99",
        "non-2xx",
        "holds"
    );
    // Elasticsearch and Kafka compile their hot paths in the first seconds of real load:
    // the first step would measure that, not the system. One step at the lowest rate,
    // not counted, warms them.
    load.step(RATES[0] as f64, step, &search).await;
    let mut report = Report::new("system");
    let mut highest_held = 0.0_f64;
    let mut misses = 0;
    for rate in RATES {
        let outcome = load.step(rate as f64, step, &search).await;
        let holds = outcome.holds();
        let held = outcome.held_per_second(step);
        let [creates, patches, reads, to_search, to_read_model] = [
            &outcome.creates,
            &outcome.patches,
            &outcome.reads,
            &outcome.to_search,
            &outcome.to_read_model,
        ]
        .map(|latencies| pair(latencies));
        println!(
            "{rate:>7} {held:>8.0} {creates:>16} {patches:>16} {reads:>16} {to_search:>18} {to_read_model:>18} {:>8} {:>5}",
            outcome.non_2xx(),
            if holds { "yes" } else { "no" }
        );
        report.notes.push(format!(
            "{rate}/s offered: {held:.0}/s answered 2xx; create p50/p99 {creates} ms, patch {patches} ms, read {reads} ms; freshness to search {to_search} ms, to the read model {to_read_model} ms; not 2xx: {}; never searchable: {}; {}",
            outcome.statuses_text(),
            outcome.never_searchable,
            if holds { "holds" } else { "does not hold" }
        ));
        for (series, latencies) in [
            ("system: create", &outcome.creates),
            ("system: freshness to search", &outcome.to_search),
            ("system: freshness to read model", &outcome.to_read_model),
        ] {
            report.load.push(LoadPoint {
                series: series.to_owned(),
                load: rate as f64,
                throughput: held,
                p50_ms: percentile(latencies, 0.5),
                p99_ms: percentile(latencies, 0.99),
            });
        }
        if holds {
            highest_held = highest_held.max(rate as f64);
            misses = 0;
        } else {
            misses += 1;
            if misses == 2 {
                break;
            }
        }
    }
    search.stop();

    // The API alone: the same process, nothing behind it.
    for kind in [Kind::Projector, Kind::Relay] {
        for name in cluster.of(kind).map(|i| i.name.clone()).collect::<Vec<_>>() {
            cluster
                .named(&name)
                .terminate(Duration::from_secs(30))
                .await;
        }
    }
    let mut peak = 0.0_f64;
    for clients in [32, 64] {
        let (ok, failed) = load.closed_loop_creates(clients, step).await;
        let per_second = ok as f64 / step.as_secs_f64();
        println!("commands only, {clients} clients: {per_second:.0} creates/s ({failed} not 2xx)");
        peak = peak.max(per_second);
    }
    println!(
        "highest rate held: {highest_held:.0}/s; commands-only peak {peak:.0}/s; ratio {:.2}",
        highest_held / peak.max(f64::MIN_POSITIVE)
    );
    report.rows.push(Row::rate(
        "whole system: highest rate held (p99 create < 25 ms, p99 search < 1 s, all 2xx) ÷ commands-only peak",
        "cmd/s",
        highest_held,
        peak,
        Some(0.5),
    ));
    report.write();
    cluster.stop(Duration::from_secs(30)).await;
    cluster.clean_up().await;
}

/// `p50/p99` in whole milliseconds, or `-` when nothing was measured.
fn pair(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    format!(
        "{:.0}/{:.0}",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99)
    )
}

/// One tenant: its writer's token, and customers no command is using, with their version.
struct Tenant {
    token: String,
    idle: Mutex<VecDeque<(Uuid, u64)>>,
}

/// The clients: one HTTP client, the tenants, a counter for names.
struct Load {
    client: reqwest::Client,
    api: String,
    tenants: Vec<Tenant>,
    next: AtomicU64,
}

/// What one step saw; latencies in milliseconds, ascending once finished.
#[derive(Debug, Default)]
struct StepOutcome {
    creates: Vec<f64>,
    patches: Vec<f64>,
    reads: Vec<f64>,
    to_search: Vec<f64>,
    to_read_model: Vec<f64>,
    /// Answers that were not 2xx, by status (0: no answer at all).
    statuses: BTreeMap<u16, u64>,
    never_searchable: u64,
}

impl StepOutcome {
    fn holds(&self) -> bool {
        !self.creates.is_empty()
            && percentile(&self.creates, 0.99) < CREATE_P99_MS
            && percentile(&self.to_search, 0.99) < SEARCH_P99_MS
            && self.non_2xx() == 0
            && self.never_searchable == 0
    }

    fn non_2xx(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn held_per_second(&self, step: Duration) -> f64 {
        (self.creates.len() + self.patches.len()) as f64 / step.as_secs_f64()
    }

    fn statuses_text(&self) -> String {
        if self.statuses.is_empty() {
            return "none".to_owned();
        }
        self.statuses
            .iter()
            .map(|(status, count)| match status {
                0 => format!("{count} without an answer"),
                status => format!("{count} x {status}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn sort(&mut self) {
        for latencies in [
            &mut self.creates,
            &mut self.patches,
            &mut self.reads,
            &mut self.to_search,
            &mut self.to_read_model,
        ] {
            latencies.sort_by(f64::total_cmp);
        }
    }
}

/// What one command came to.
enum Answer {
    Created { id: Uuid, version: u64 },
    Patched { id: Uuid, version: u64 },
    Refused(u16),
}

impl Load {
    async fn start(api: &str, tenants: usize) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let registered = register_writers(&client, api, "sys", tenants)
            .await
            .into_iter()
            .map(|(_, token)| Tenant {
                token,
                idle: Mutex::default(),
            })
            .collect();
        Self {
            client,
            api: api.to_owned(),
            tenants: registered,
            next: AtomicU64::new(0),
        }
    }

    /// `rate` commands a second for `duration`, each at its scheduled time; then waits for
    /// the step's creates to become searchable.
    async fn step(
        self: &Arc<Self>,
        rate: f64,
        duration: Duration,
        search: &SearchWatch,
    ) -> StepOutcome {
        let outcome = Arc::new(Mutex::new(StepOutcome::default()));
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let interval = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        let mut commands = Vec::with_capacity(total as usize);
        for i in 0..total {
            let scheduled = started + interval.mul_f64(i as f64);
            tokio::time::sleep_until(scheduled.into()).await;
            let (load, outcome, search) = (self.clone(), outcome.clone(), search.clone());
            commands.push(tokio::spawn(async move {
                load.one(i, scheduled, &outcome, &search).await;
            }));
        }
        join_all(commands).await;
        let never = search.wait_until_seen(SEARCH_GRACE).await;
        // Every command of the step is done: what they noted is complete.
        let mut outcome = std::mem::take(&mut *outcome.lock().expect("outcome lock"));
        outcome.to_search = search.take_latencies();
        outcome.never_searchable = never;
        outcome.sort();
        outcome
    }

    /// Command `i`: a patch of an idle customer of its tenant two times in five (when it
    /// has one), else a create; after every other one, a read of what it wrote.
    async fn one(
        &self,
        i: u64,
        scheduled: Instant,
        outcome: &Mutex<StepOutcome>,
        search: &SearchWatch,
    ) {
        let tenant = &self.tenants[i as usize % self.tenants.len()];
        let patch = if i % 5 >= 3 {
            tenant.idle.lock().expect("idle lock").pop_front()
        } else {
            None
        };
        let answer = match patch {
            Some((id, version)) => self.patch(tenant, id, version).await,
            None => self.create(tenant).await,
        };
        let answered = Instant::now();
        let latency = answered.duration_since(scheduled).as_secs_f64() * 1000.0;
        let (id, version) = {
            let mut outcome = outcome.lock().expect("outcome lock");
            match answer {
                Answer::Created { id, version } => {
                    outcome.creates.push(latency);
                    search.expect(id, answered);
                    (id, version)
                }
                Answer::Patched { id, version } => {
                    outcome.patches.push(latency);
                    (id, version)
                }
                Answer::Refused(status) => {
                    *outcome.statuses.entry(status).or_default() += 1;
                    // A refused patch leaves the customer where it was: usable again.
                    if let Some(customer) = patch {
                        tenant.idle.lock().expect("idle lock").push_back(customer);
                    }
                    return;
                }
            }
        };
        if i.is_multiple_of(2) {
            let read_started = Instant::now();
            let status = self.read(tenant, id, version).await;
            let mut outcome = outcome.lock().expect("outcome lock");
            if status.is_success() {
                outcome
                    .reads
                    .push(read_started.elapsed().as_secs_f64() * 1000.0);
                outcome
                    .to_read_model
                    .push(answered.elapsed().as_secs_f64() * 1000.0);
            } else {
                *outcome.statuses.entry(status.as_u16()).or_default() += 1;
            }
        }
        tenant
            .idle
            .lock()
            .expect("idle lock")
            .push_back((id, version));
    }

    async fn create(&self, tenant: &Tenant) -> Answer {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .post(format!("{}/v1/customers", self.api))
            .bearer_auth(&tenant.token)
            .json(&json!({"name": format!("System Customer {n}"),
                          "email": format!("system{n}@example.com"), "tags": ["bench"]}))
            .send()
            .await;
        match answer_of(response).await {
            Ok(body) => match (
                body["id"].as_str().and_then(|id| id.parse().ok()),
                body["version"].as_u64(),
            ) {
                (Some(id), Some(version)) => Answer::Created { id, version },
                _ => Answer::Refused(0),
            },
            Err(status) => Answer::Refused(status),
        }
    }

    async fn patch(&self, tenant: &Tenant, id: Uuid, version: u64) -> Answer {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .patch(format!("{}/v1/customers/{id}", self.api))
            .bearer_auth(&tenant.token)
            .header("if-match", format!("\"{version}\""))
            .json(&json!({"name": format!("Renamed Customer {n}")}))
            .send()
            .await;
        match answer_of(response).await {
            Ok(body) => Answer::Patched {
                id,
                version: body["version"].as_u64().unwrap_or(version + 1),
            },
            Err(status) => Answer::Refused(status),
        }
    }

    async fn read(&self, tenant: &Tenant, id: Uuid, version: u64) -> StatusCode {
        self.client
            .get(format!(
                "{}/v1/customers/{id}?min_version={version}&wait_ms=5000",
                self.api
            ))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .map_or(StatusCode::BAD_GATEWAY, |r| r.status())
    }

    /// Creates from `clients` loops for `duration`: how many were 2xx, how many not.
    async fn closed_loop_creates(&self, clients: usize, duration: Duration) -> (u64, u64) {
        let deadline = Instant::now() + duration;
        let loops = (0..clients).map(|c| async move {
            let tenant = &self.tenants[c % self.tenants.len()];
            let (mut ok, mut failed) = (0, 0);
            while Instant::now() < deadline {
                match self.create(tenant).await {
                    Answer::Created { .. } => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        });
        join_all(loops)
            .await
            .into_iter()
            .fold((0, 0), |(ok, failed), (o, f)| (ok + o, failed + f))
    }
}

/// The body of a 2xx, or the status of anything else (0: no answer).
async fn answer_of(response: reqwest::Result<reqwest::Response>) -> Result<Value, u16> {
    match response {
        Ok(response) if response.status().is_success() => response.json().await.map_err(|_| 0),
        Ok(response) => Err(response.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// Customers created and not yet found in search, polled every 10 ms.
#[derive(Clone)]
struct SearchWatch {
    pending: Arc<Mutex<HashMap<Uuid, Instant>>>,
    latencies: Arc<Mutex<Vec<f64>>>,
    stop: CancellationToken,
}

impl SearchWatch {
    fn start(cluster: &Cluster) -> Self {
        let watch = Self {
            pending: Arc::default(),
            latencies: Arc::default(),
            stop: CancellationToken::new(),
        };
        let es = read_model::Es::new(&cluster.projector_config().elasticsearch_url)
            .expect("an Elasticsearch client");
        let alias = read_model::search::INDEX.alias(&cluster.prefix);
        let polling = watch.clone();
        tokio::spawn(async move {
            while !polling.stop.is_cancelled() {
                polling.poll(&es, &alias).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        watch
    }

    fn expect(&self, id: Uuid, accepted: Instant) {
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, accepted);
    }

    async fn poll(&self, es: &read_model::Es, alias: &str) {
        // The oldest first, a bounded query however far search falls behind.
        let ids: Vec<String> = {
            let pending = self.pending.lock().expect("pending lock");
            let mut oldest: Vec<(&Uuid, &Instant)> = pending.iter().collect();
            oldest.sort_by_key(|(_, at)| **at);
            oldest
                .into_iter()
                .take(2_000)
                .map(|(id, _)| id.to_string())
                .collect()
        };
        if ids.is_empty() {
            return;
        }
        let Some(found) = searchable(es, alias, &ids).await else {
            return;
        };
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("pending lock");
        let mut latencies = self.latencies.lock().expect("latencies lock");
        for id in found.iter().filter_map(|id| id.parse().ok()) {
            if let Some(accepted) = pending.remove(&id) {
                latencies.push(now.duration_since(accepted).as_secs_f64() * 1000.0);
            }
        }
    }

    /// Waits until nothing is pending or `grace` passed; how many were never seen (they
    /// are forgotten, so the next step starts clean).
    async fn wait_until_seen(&self, grace: Duration) -> u64 {
        let deadline = Instant::now() + grace;
        loop {
            let left = self.pending.lock().expect("pending lock").len();
            if left == 0 || Instant::now() >= deadline {
                self.pending.lock().expect("pending lock").clear();
                return left as u64;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn take_latencies(&self) -> Vec<f64> {
        std::mem::take(&mut *self.latencies.lock().expect("latencies lock"))
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}
