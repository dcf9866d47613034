//! PostgreSQL's own `pgbench` as a baseline: what the database takes from a client that
//! costs it nothing (C, prepared statements, one round trip per statement), so a benchmark
//! can say what Chronicle makes of it.
//!
//! `CHRONICLE_PGBENCH` names the binary (`./dev bench` sets it to the server's own); else
//! the newest under `/usr/lib/postgresql/*/bin`, else `pgbench` on the `PATH`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// What one pgbench run saw.
#[derive(Debug, Default)]
pub struct PgbenchRun {
    /// Transactions per second, without connection set-up.
    pub tps: f64,
    /// Each transaction's latency in milliseconds (from its scheduled start when a rate is
    /// given), ascending.
    pub latencies_ms: Vec<f64>,
    /// Transactions that failed.
    pub failed: u64,
}

/// The pgbench binary to run.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHRONICLE_PGBENCH") {
        return PathBuf::from(path);
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/pgbench"))
        .filter(|path| path.exists())
        .collect();
    installed.sort_by_key(|path| {
        path.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
    });
    installed.pop().unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// Runs `script` (pgbench's script language) against `url` with `clients` connections for
/// `duration`: closed loop, or open loop at `rate` transactions per second.
///
/// # Panics
/// When pgbench cannot run or fails: a benchmark without its baseline says nothing.
pub async fn run(
    url: &str,
    script: &str,
    clients: usize,
    duration: Duration,
    rate: Option<f64>,
) -> PgbenchRun {
    let dir = std::env::temp_dir().join(format!("chronicle-pgbench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a scratch directory for pgbench");
    let script_path = dir.join("script.sql");
    std::fs::write(&script_path, script).expect("write the pgbench script");
    let threads = clients.min(2);
    let mut command = Command::new(binary());
    command
        .arg("--no-vacuum")
        .args(["--protocol", "prepared"])
        .args(["--client", &clients.to_string()])
        .args(["--jobs", &threads.to_string()])
        .args(["--time", &duration.as_secs().max(1).to_string()])
        .arg("--log")
        .arg(format!("--log-prefix={}", dir.join("log").display()))
        .arg(format!("--file={}", script_path.display()));
    if let Some(rate) = rate {
        command.arg(format!("--rate={rate:.0}"));
    }
    let output = command
        .arg(url)
        .output()
        .await
        .unwrap_or_else(|error| panic!("run {}: {error}", binary().display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut run = PgbenchRun {
        tps: figure(&stdout, "tps = ")
            .unwrap_or_else(|| panic!("no tps in pgbench's output: {stdout}")),
        failed: figure(&stdout, "number of failed transactions: ").unwrap_or(0.0) as u64,
        latencies_ms: latencies(&dir),
    };
    run.latencies_ms.sort_by(f64::total_cmp);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// The number after `label` at the start of a line of pgbench's summary.
fn figure(summary: &str, label: &str) -> Option<f64> {
    summary.lines().find_map(|line| {
        line.strip_prefix(label)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Every transaction's latency from pgbench's per-transaction logs (`client transaction
/// microseconds script epoch epoch_us [lag]`; a skipped or failed one has no number).
fn latencies(dir: &Path) -> Vec<f64> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let is_log = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("log"));
        if !is_log {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        latencies.extend(text.lines().filter_map(|line| {
            let micros: f64 = line.split_whitespace().nth(2)?.parse().ok()?;
            Some(micros / 1000.0)
        }));
    }
    latencies
}
