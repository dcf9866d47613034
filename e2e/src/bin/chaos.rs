//! `./dev chaos [--short]`: see `e2e::lab::chaos`. Prints the table, writes it with the
//! details to `.chronicle/chaos/report.md`, and exits 1 if any check failed.

#![allow(clippy::print_stdout)] // the report is the output

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2e::lab::chaos::{self, ChaosSettings, Fault};
use e2e::lab::cluster::ClusterSpec;

#[derive(Debug, Parser)]
#[command(about = "Fault injection under load against two of each Chronicle process")]
struct Cli {
    /// The CI variant: 15 s outages, shorter warm-up.
    #[arg(long)]
    short: bool,
    /// Commands per second over all tenants.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    #[arg(long, default_value_t = 3)]
    tenants: usize,
    /// Seconds Kafka and Elasticsearch stay down (default 60, or 15 with --short).
    #[arg(long)]
    outage_secs: Option<u64>,
    /// Only these faults, in this order (default: all): kill-api, kill-relay,
    /// kill-projector, kafka, elasticsearch, postgres, relay-mid-batch.
    #[arg(long = "fault", value_parser = fault)]
    faults: Vec<Fault>,
}

fn fault(name: &str) -> Result<Fault, String> {
    Fault::ALL
        .into_iter()
        .find(|fault| fault.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
            format!("unknown fault (known: {})", names.join(", "))
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let state =
        PathBuf::from(std::env::var("CHRONICLE_STATE").unwrap_or_else(|_| ".chronicle".to_owned()));
    let outage = cli.outage_secs.unwrap_or(if cli.short { 15 } else { 60 });
    let settings = ChaosSettings {
        rate: cli.rate,
        tenants: cli.tenants,
        outage: Duration::from_secs(outage),
        restart_after: Duration::from_secs(if cli.short { 2 } else { 5 }),
        warm_up: Duration::from_secs(if cli.short { 10 } else { 30 }),
        recovery_limit: Duration::from_secs(240),
        dev: PathBuf::from(std::env::var("CHRONICLE_DEV").unwrap_or_else(|_| "./dev".to_owned())),
        spec: ClusterSpec {
            apis: 2,
            relays: 2,
            projectors: 2,
            bin_dir: PathBuf::from(
                std::env::var("CHRONICLE_LAB_BIN_DIR")
                    .unwrap_or_else(|_| "target/debug".to_owned()),
            ),
            log_dir: state.join("logs/chaos"),
            env: Vec::new(),
        },
    };
    let faults = if cli.faults.is_empty() {
        Fault::ALL.to_vec()
    } else {
        cli.faults
    };
    let report = chaos::run(&settings, &faults).await;
    let table = report.table();
    let details = report.details();
    println!("\n{table}\n{details}");
    let dir = state.join("chaos");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            dir.join("report.md"),
            format!(
                "# ./dev chaos{}\n\n{table}\n{details}",
                if cli.short { " --short" } else { "" }
            ),
        )
    });
    if let Err(error) = written {
        println!("could not write {}: {error}", dir.display());
    }
    if report.passed() {
        println!("chaos: every check passed");
        ExitCode::SUCCESS
    } else {
        println!(
            "chaos: FAILED (see the table and {}/logs/chaos)",
            state.display()
        );
        ExitCode::FAILURE
    }
}
