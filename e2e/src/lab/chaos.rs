//! `./dev chaos`: faults, one after another, under a steady write load against two of each
//! process; after each, the time to recover and the checks of [`super::verify`].
//!
//! Recovery is timed from the moment the fault ends (the process restarted, the service
//! back) to the moment every instance is healthy again and the read model holds every
//! command accepted until then. The checks then run with the load paused, so that "not in
//! Kafka yet" is never mistaken for "lost"; the load resumes for the next fault.

// The run reports each fault as it goes: it takes minutes, and its user watches it.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::cluster::{Cluster, ClusterSpec, Kind};
use super::load::{Ledger, Load};
use super::verify::{Findings, Verifier, read_model_versions};

#[derive(Debug, Clone)]
pub struct ChaosSettings {
    /// Commands per second, over all tenants.
    pub rate: f64,
    pub tenants: usize,
    /// How long Kafka and Elasticsearch stay down.
    pub outage: Duration,
    /// How long a killed process stays dead before its supervisor restarts it.
    pub restart_after: Duration,
    pub warm_up: Duration,
    /// How long recovery may take before the fault counts as not recovered.
    pub recovery_limit: Duration,
    /// `./dev`, whose `_infra` subcommand stops and starts PostgreSQL, Kafka and
    /// Elasticsearch.
    pub dev: PathBuf,
    pub spec: ClusterSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill(Kind),
    KafkaDown,
    ElasticsearchDown,
    PostgresRestart,
    RelayMidBatch,
}

impl Fault {
    pub const ALL: [Self; 7] = [
        Self::Kill(Kind::Api),
        Self::Kill(Kind::Relay),
        Self::Kill(Kind::Projector),
        Self::KafkaDown,
        Self::ElasticsearchDown,
        Self::PostgresRestart,
        Self::RelayMidBatch,
    ];

    /// The fault's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill(Kind::Api) => "kill-api",
            Self::Kill(Kind::Relay) => "kill-relay",
            Self::Kill(Kind::Projector) => "kill-projector",
            Self::KafkaDown => "kafka",
            Self::ElasticsearchDown => "elasticsearch",
            Self::PostgresRestart => "postgres",
            Self::RelayMidBatch => "relay-mid-batch",
        }
    }

    fn describe(self, settings: &ChaosSettings) -> String {
        let outage = settings.outage.as_secs();
        match self {
            Self::Kill(Kind::Api) => "kill -9 command-api-1".to_owned(),
            Self::Kill(Kind::Relay) => "kill -9 the active relay".to_owned(),
            Self::Kill(Kind::Projector) => "kill -9 projector-1".to_owned(),
            Self::KafkaDown => format!("Kafka stopped {outage} s"),
            Self::ElasticsearchDown => format!("Elasticsearch stopped {outage} s"),
            Self::PostgresRestart => "PostgreSQL immediate restart".to_owned(),
            Self::RelayMidBatch => "kill -9 the relay mid-batch".to_owned(),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: String,
    /// Accepted commands per second from the fault's start to recovery.
    pub load_held: f64,
    pub accepted: usize,
    pub findings: Findings,
    /// `None`: not recovered within the limit.
    pub recovered_after: Option<Duration>,
    /// Answers a client must never get, during this fault.
    pub bad_answers: usize,
    pub note: String,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.findings.passed() && self.recovered_after.is_some() && self.bad_answers == 0
    }
}

#[derive(Debug)]
pub struct ChaosReport {
    pub rows: Vec<Row>,
    pub ledger_summary: String,
    /// How long each process took to end on SIGTERM (`None`: killed after the limit).
    pub shutdowns: Vec<(String, Option<Duration>)>,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.rows.iter().all(Row::passed) && self.shutdowns.iter().all(|(_, took)| took.is_some())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| fault | load held (commands/s) | commands accepted | events lost | divergent documents | 5xx / 503 without Retry-After | seconds to recover |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let recovered = row.recovered_after.map_or_else(
                || "not recovered".to_owned(),
                |d| format!("{:.1}", d.as_secs_f64()),
            );
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {} | {} | {} | {} |",
                row.fault,
                row.load_held,
                row.accepted,
                row.findings.lost(),
                row.findings.divergent,
                row.bad_answers,
                recovered
            );
        }
        out
    }

    pub fn details(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            let f = &row.findings;
            let _ = writeln!(
                out,
                "- {}: {}; duplicated {}, out of order {}, regressed {}, redelivered by Kafka {}{}",
                row.fault,
                row.note,
                f.duplicated,
                f.out_of_order,
                f.regressed,
                f.redelivered,
                if f.notes.is_empty() {
                    String::new()
                } else {
                    format!("; {}", f.notes.join("; "))
                }
            );
        }
        let _ = writeln!(out, "- load: {}", self.ledger_summary);
        let shutdowns: Vec<String> = self
            .shutdowns
            .iter()
            .map(|(name, took)| match took {
                Some(took) => format!("{name} {:.1} s", took.as_secs_f64()),
                None => format!("{name} DID NOT END"),
            })
            .collect();
        let _ = writeln!(out, "- SIGTERM to exit: {}", shutdowns.join(", "));
        out
    }
}

pub async fn run(settings: &ChaosSettings, faults: &[Fault]) -> ChaosReport {
    let mut cluster = Cluster::start(&settings.spec).await;
    println!(
        "chaos: {} instances up (prefix {}); load {} commands/s over {} tenants",
        cluster.instances.len(),
        cluster.prefix,
        settings.rate,
        settings.tenants
    );
    let load = Load::start(cluster.api_urls(), settings.tenants, settings.rate).await;
    let mut verifier = Verifier::new(
        cluster.db.relay_pool(2).await,
        cluster.db.projector_pool(2).await,
        cluster.projector_config(),
    );
    tokio::time::sleep(settings.warm_up).await;

    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for &fault in faults {
        let name = fault.describe(settings);
        println!("chaos: {name} ...");
        let violations_before = violations(&load);
        let started = Instant::now();
        let note = inject(fault, settings, &mut cluster, &load, &client).await;
        let restored = Instant::now();
        let recovery = recover(&cluster, &load, restored, settings.recovery_limit).await;
        let window_end = Instant::now();
        load.pause().await;
        // Everything accepted is now answered: let the pipeline take the last of it.
        let settled = recover(&cluster, &load, Instant::now(), settings.recovery_limit).await;
        let mut note = note;
        if let Err(waiting_for) = &recovery {
            println!("chaos:   not recovered: {waiting_for}");
            let _ = write!(note, "; not recovered: {waiting_for}");
        }
        if let Err(waiting_for) = &settled {
            let _ = write!(note, "; not settled with the load paused: {waiting_for}");
        }
        let recovered_after = recovery.ok();
        let snapshot = clone_ledger(&load.ledger.lock().expect("ledger lock"));
        let findings = verifier.check(&snapshot).await;
        load.resume();
        let (accepted, bad_answers) = {
            let ledger = load.ledger.lock().expect("ledger lock");
            (
                ledger.accepted_between(started, window_end),
                ledger.violations.len() - violations_before,
            )
        };
        let row = Row {
            fault: name,
            load_held: accepted as f64 / (window_end - started).as_secs_f64(),
            accepted,
            findings,
            recovered_after,
            bad_answers,
            note,
        };
        println!(
            "chaos:   {} accepted, {:.1}/s held, lost {}, divergent {}, bad answers {}, recovered {}",
            row.accepted,
            row.load_held,
            row.findings.lost(),
            row.findings.divergent,
            row.bad_answers,
            row.recovered_after.map_or_else(
                || "never".to_owned(),
                |d| format!("after {:.1} s", d.as_secs_f64())
            )
        );
        rows.push(row);
    }
    let ledger = load.stop().await;
    let ledger_summary = summarize(&ledger.lock().expect("ledger lock"));
    let shutdowns = cluster.stop(Duration::from_secs(30)).await;
    cluster.clean_up().await;
    ChaosReport {
        rows,
        ledger_summary,
        shutdowns,
    }
}

fn violations(load: &Load) -> usize {
    load.ledger.lock().expect("ledger lock").violations.len()
}

fn clone_ledger(ledger: &Ledger) -> Ledger {
    Ledger {
        accepted: ledger.accepted.clone(),
        ..Ledger::default()
    }
}

fn summarize(ledger: &Ledger) -> String {
    let statuses: Vec<String> = ledger
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}×{count}"))
        .collect();
    let mut summary = format!(
        "{} commands accepted; answers {}; {} requests unanswered (connection refused or reset, retried); {} given up; {} refused",
        ledger.accepted.len(),
        statuses.join(" "),
        ledger.no_answer,
        ledger.given_up,
        ledger.refused.len()
    );
    for violation in ledger.violations.iter().take(5) {
        let _ = write!(summary, "; VIOLATION {violation}");
    }
    for refused in ledger.refused.iter().take(5) {
        let _ = write!(summary, "; refused: {refused}");
    }
    summary
}

/// Applies a fault and ends it; returns a note on what was done.
async fn inject(
    fault: Fault,
    settings: &ChaosSettings,
    cluster: &mut Cluster,
    load: &Load,
    client: &reqwest::Client,
) -> String {
    match fault {
        Fault::Kill(kind) => {
            let name = match kind {
                Kind::Relay => cluster
                    .active_relay(client)
                    .await
                    .unwrap_or_else(|| "relay-1".to_owned()),
                Kind::Api => "command-api-1".to_owned(),
                Kind::Projector => "projector-1".to_owned(),
            };
            let instance = cluster.named(&name);
            instance.kill9().await;
            tokio::time::sleep(settings.restart_after).await;
            instance.restart().expect("restart the killed instance");
            format!(
                "{name} killed, restarted after {} s",
                settings.restart_after.as_secs()
            )
        }
        Fault::KafkaDown => outage(settings, "kafka").await,
        Fault::ElasticsearchDown => outage(settings, "elasticsearch").await,
        Fault::PostgresRestart => {
            infra(settings, "restart", "postgres").await;
            "pg_ctl stop -m immediate, then start".to_owned()
        }
        Fault::RelayMidBatch => {
            let Some(name) = cluster.active_relay(client).await else {
                return "no active relay found".to_owned();
            };
            // A burst of creates, and the kill as soon as the relay has some of it
            // published and the rest not: its batch is in flight.
            let burst = load.burst(600);
            let watch = async {
                let instance = cluster.named(&name);
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut published_before = None;
                while Instant::now() < deadline {
                    let published = instance
                        .metric(client, "chronicle_relay_published_events")
                        .await;
                    let lag = instance.metric(client, "chronicle_relay_lag_events").await;
                    match (published_before, published, lag) {
                        (None, Some(p), _) => published_before = Some(p),
                        (Some(before), Some(p), Some(lag)) if p > before && lag > 0.0 => {
                            instance.kill9().await;
                            return format!(
                                "{name} killed with {lag} events still to publish, {} published from the burst",
                                p - before
                            );
                        }
                        _ => {}
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                instance.kill9().await;
                format!(
                    "{name} killed (the burst was published before a mid-batch moment was seen)"
                )
            };
            let ((), note) = tokio::join!(burst, watch);
            tokio::time::sleep(settings.restart_after).await;
            cluster
                .named(&name)
                .restart()
                .expect("restart the killed relay");
            note
        }
    }
}

async fn outage(settings: &ChaosSettings, service: &str) -> String {
    infra(settings, "stop", service).await;
    tokio::time::sleep(settings.outage).await;
    infra(settings, "start", service).await;
    format!(
        "{service} stopped, started again {} s later",
        settings.outage.as_secs()
    )
}

async fn infra(settings: &ChaosSettings, action: &str, service: &str) {
    let status = tokio::process::Command::new(&settings.dev)
        .args(["_infra", action, service])
        .status()
        .await
        .expect("run ./dev _infra");
    assert!(status.success(), "./dev _infra {action} {service} failed");
}

/// Waits until every instance is healthy and the read model holds every command accepted
/// before `since`: how long after `since` that was, or what still stood in the way when
/// `limit` ran out (so a failed run says which process, and why, in its report).
async fn recover(
    cluster: &Cluster,
    load: &Load,
    since: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    let client = reqwest::Client::new();
    let projector_pool = cluster.db.projector_pool(2).await;
    let es = cluster.projector_config().elasticsearch_url;
    let deadline = since + limit;
    loop {
        let waiting_for = match unhealthy(cluster, &client).await {
            Some(instance) => instance,
            None => {
                match caught_up(load, &projector_pool, &client, &es, &cluster.prefix, since).await {
                    Ok(()) => return Ok(since.elapsed()),
                    Err(behind) => behind,
                }
            }
        };
        if Instant::now() > deadline {
            return Err(waiting_for);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first instance that is not healthy, with what it says of itself.
async fn unhealthy(cluster: &Cluster, client: &reqwest::Client) -> Option<String> {
    for instance in &cluster.instances {
        let verdict = match instance.kind {
            Kind::Api => {
                let url = format!("{}/readyz", instance.base_url().unwrap_or_default());
                match client.get(url).timeout(Duration::from_secs(3)).send().await {
                    Ok(response) if response.status().is_success() => None,
                    Ok(response) => Some(format!(
                        "/readyz {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )),
                    Err(error) => Some(format!("/readyz unanswered: {error}")),
                }
            }
            Kind::Relay | Kind::Projector => match instance.healthz(client).await {
                Some(health) if health["status"] == "ok" => None,
                Some(health) => Some(format!("/healthz {health}")),
                None => Some("/healthz unanswered".to_owned()),
            },
        };
        if let Some(verdict) = verdict {
            return Some(format!("{} not healthy: {verdict}", instance.name));
        }
    }
    None
}

/// Whether the projections hold every command accepted before `since`: the read model each
/// customer's version, the history and audit indices as many events (a customer's events
/// are versions 1 to its latest, so the sum of the latest versions counts them).
async fn caught_up(
    load: &Load,
    projector_pool: &sqlx::PgPool,
    client: &reqwest::Client,
    es: &str,
    prefix: &str,
    since: Instant,
) -> Result<(), String> {
    let wanted = {
        let ledger = load.ledger.lock().expect("ledger lock");
        let accepted = Ledger {
            accepted: ledger
                .accepted
                .iter()
                .filter(|a| a.at <= since)
                .cloned()
                .collect(),
            ..Ledger::default()
        };
        accepted.latest_versions()
    };
    let events: u64 = wanted.values().sum();
    for index in ["history", "audit"] {
        let count = client
            .get(format!("{es}/{prefix}-{index}/_count"))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        let count = match count {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|body| body["count"].as_u64()),
            Err(_) => None,
        };
        match count {
            Some(count) if count >= events => {}
            Some(count) => return Err(format!("{index} index holds {count} of {events} events")),
            None => return Err(format!("{index} index cannot be counted")),
        }
    }
    let mut tenants: Vec<&String> = wanted.keys().map(|(tenant, _)| tenant).collect();
    tenants.sort();
    tenants.dedup();
    for tenant in tenants {
        let rows = read_model_versions(projector_pool, tenant)
            .await
            .map_err(|error| format!("read model of {tenant} unreadable: {error}"))?;
        let have: std::collections::HashMap<uuid::Uuid, i64> = rows.into_iter().collect();
        let behind = wanted
            .iter()
            .filter(|((t, customer), version)| {
                t == tenant
                    && have
                        .get(customer)
                        .is_none_or(|have| u64::try_from(*have).unwrap_or(0) < **version)
            })
            .count();
        if behind > 0 {
            return Err(format!("read model of {tenant}: {behind} customers behind"));
        }
    }
    Ok(())
}
