//! `./dev soak --minutes N`: a steady write load for N minutes against one of each
//! process, sampling every process's resident memory and the pipeline's lag. The report
//! compares memory after warm-up with memory at the end (flat means < 10% growth), and
//! shows the highest RSS (each process should stay under 100 MB) and the lag's bounds.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::cluster::{Cluster, ClusterSpec, Kind};
use super::load::Load;

/// Growth of RSS from warm-up to the end that still counts as flat.
pub const FLAT_GROWTH: f64 = 0.10;
/// The resident memory each process should stay under at steady load.
pub const RSS_LIMIT_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SoakSettings {
    pub duration: Duration,
    pub rate: f64,
    pub tenants: usize,
    pub sample_every: Duration,
    pub spec: ClusterSpec,
}

impl SoakSettings {
    /// The first fifth of the run (between one and five minutes): caches fill, pools
    /// open, allocators settle. Memory is judged from there on.
    pub fn warm_up(&self) -> Duration {
        (self.duration / 5).clamp(Duration::from_secs(60), Duration::from_secs(300))
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub rss: Vec<(String, Option<u64>)>,
    pub relay_lag: Option<f64>,
    /// The largest lag of any projection.
    pub projector_lag: Option<f64>,
    pub accepted: usize,
}

#[derive(Debug)]
pub struct ProcessMemory {
    pub name: String,
    pub after_warm_up: u64,
    pub at_end: u64,
    pub max: u64,
}

impl ProcessMemory {
    pub fn growth(&self) -> f64 {
        self.at_end as f64 / self.after_warm_up.max(1) as f64 - 1.0
    }
}

#[derive(Debug)]
pub struct SoakReport {
    pub settings: SoakSettings,
    pub samples: Vec<Sample>,
    pub memory: Vec<ProcessMemory>,
    pub accepted_per_second: f64,
    pub violations: usize,
    pub relay_lag_max: f64,
    pub projector_lag_max: f64,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.violations == 0
            && self
                .memory
                .iter()
                .all(|m| m.max < RSS_LIMIT_BYTES && m.growth() < FLAT_GROWTH)
    }

    pub fn markdown(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Soak: {:.0} min at {:.0} commands/s offered ({:.1}/s accepted) over {} tenants; warm-up {:.0} s; a sample every {} s.\n",
            self.settings.duration.as_secs_f64() / 60.0,
            self.settings.rate,
            self.accepted_per_second,
            self.settings.tenants,
            self.settings.warm_up().as_secs_f64(),
            self.settings.sample_every.as_secs()
        );
        let _ = writeln!(
            out,
            "| process | RSS after warm-up (MiB) | RSS at end (MiB) | growth | max RSS (MiB) | verdict |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
        for m in &self.memory {
            let verdict = if m.max >= RSS_LIMIT_BYTES {
                "over 100 MB"
            } else if m.growth() >= FLAT_GROWTH {
                "growing"
            } else {
                "flat"
            };
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:+.1}% | {:.1} | {verdict} |",
                m.name,
                mib(m.after_warm_up),
                mib(m.at_end),
                m.growth() * 100.0,
                mib(m.max)
            );
        }
        let _ = writeln!(
            out,
            "\nLag: relay at most {:.0} events, projections at most {:.0} events. Answers a client must never get (5xx, 503 without Retry-After): {}.",
            self.relay_lag_max, self.projector_lag_max, self.violations
        );
        out
    }

    pub fn csv(&self) -> String {
        let mut out = String::new();
        let names: Vec<&str> = self
            .samples
            .first()
            .map(|s| s.rss.iter().map(|(name, _)| name.as_str()).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "seconds,accepted,relay_lag,projector_lag,{}",
            names
                .iter()
                .map(|n| format!("{n}_rss_bytes"))
                .collect::<Vec<_>>()
                .join(",")
        );
        for sample in &self.samples {
            let rss: Vec<String> = sample
                .rss
                .iter()
                .map(|(_, rss)| rss.map(|r| r.to_string()).unwrap_or_default())
                .collect();
            let _ = writeln!(
                out,
                "{:.0},{},{},{},{}",
                sample.at.as_secs_f64(),
                sample.accepted,
                sample.relay_lag.map(|l| l.to_string()).unwrap_or_default(),
                sample
                    .projector_lag
                    .map(|l| l.to_string())
                    .unwrap_or_default(),
                rss.join(",")
            );
        }
        out
    }
}

pub async fn run(settings: SoakSettings) -> SoakReport {
    let mut cluster = Cluster::start(&settings.spec).await;
    let load = Load::start(cluster.api_urls(), settings.tenants, settings.rate).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(settings.sample_every);
    let progress = indicatif::ProgressBar::new(settings.duration.as_secs());
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "soak {elapsed_precise} [{bar:40}] {pos}/{len} s {msg}",
        )
        .expect("a valid template"),
    );
    while started.elapsed() < settings.duration {
        ticks.tick().await;
        let sample = sample(&cluster, &load, &client, started.elapsed()).await;
        progress.set_position(started.elapsed().as_secs().min(settings.duration.as_secs()));
        progress.set_message(
            sample
                .rss
                .iter()
                .map(|(name, rss)| {
                    format!("{name} {:.0} MiB", rss.unwrap_or(0) as f64 / 1_048_576.0)
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        samples.push(sample);
    }
    progress.finish_and_clear();
    let ledger = load.stop().await;
    let (accepted, violations) = {
        let ledger = ledger.lock().expect("ledger lock");
        (ledger.accepted.len(), ledger.violations.len())
    };
    cluster.stop(Duration::from_secs(30)).await;
    cluster.clean_up().await;
    let memory = memory(&samples, settings.warm_up());
    let max_of =
        |lag: fn(&Sample) -> Option<f64>| samples.iter().filter_map(lag).fold(0.0_f64, f64::max);
    SoakReport {
        accepted_per_second: accepted as f64 / settings.duration.as_secs_f64(),
        relay_lag_max: max_of(|s| s.relay_lag),
        projector_lag_max: max_of(|s| s.projector_lag),
        memory,
        samples,
        violations,
        settings,
    }
}

async fn sample(cluster: &Cluster, load: &Load, client: &reqwest::Client, at: Duration) -> Sample {
    let rss = cluster
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.rss_bytes()))
        .collect();
    let relay_lag = match cluster.of(Kind::Relay).next() {
        Some(relay) => relay.metric(client, "chronicle_relay_lag_events").await,
        None => None,
    };
    let mut projector_lag = None;
    for projector in cluster.of(Kind::Projector) {
        if let Some(health) = projector.healthz(client).await
            && let Some(projections) = health["projections"].as_object()
        {
            let lag = projections
                .values()
                .filter_map(|p| p["lag_events"].as_f64())
                .fold(0.0_f64, f64::max);
            projector_lag = Some(projector_lag.unwrap_or(0.0_f64).max(lag));
        }
    }
    let accepted = load.ledger.lock().expect("ledger lock").accepted.len();
    Sample {
        at,
        rss,
        relay_lag,
        projector_lag,
        accepted,
    }
}

/// Per process: the mean RSS over the minute after warm-up, over the last minute, and the
/// highest seen after warm-up.
fn memory(samples: &[Sample], warm_up: Duration) -> Vec<ProcessMemory> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let end = samples.last().map_or(Duration::ZERO, |s| s.at);
    let minute = Duration::from_secs(60);
    first
        .rss
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let mean = |from: Duration, to: Duration| {
                let values: Vec<u64> = samples
                    .iter()
                    .filter(|s| s.at >= from && s.at <= to)
                    .filter_map(|s| s.rss[i].1)
                    .collect();
                values.iter().sum::<u64>() / (values.len().max(1) as u64)
            };
            let max = samples
                .iter()
                .filter(|s| s.at >= warm_up)
                .filter_map(|s| s.rss[i].1)
                .max()
                .unwrap_or(0);
            ProcessMemory {
                name: name.clone(),
                after_warm_up: mean(warm_up, warm_up + minute),
                at_end: mean(end.saturating_sub(minute), end),
                max,
            }
        })
        .collect()
}
