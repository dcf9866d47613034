//! `./dev soak --minutes N`: see `e2e::lab::soak`. Prints the report, writes it and the
//! samples to `.chronicle/soak/`, and exits 1 if memory grew, passed 100 MB, or a client
//! got an answer it never should.

#![allow(clippy::print_stdout)] // the report is the output

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2e::lab::cluster::ClusterSpec;
use e2e::lab::soak::{self, SoakSettings};

#[derive(Debug, Parser)]
#[command(about = "A steady load for N minutes; memory and lag sampled")]
struct Cli {
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Commands per second over all tenants.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    #[arg(long, default_value_t = 3)]
    tenants: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let state =
        PathBuf::from(std::env::var("CHRONICLE_STATE").unwrap_or_else(|_| ".chronicle".to_owned()));
    let settings = SoakSettings {
        duration: Duration::from_secs(cli.minutes * 60),
        rate: cli.rate,
        tenants: cli.tenants,
        sample_every: Duration::from_secs(cli.sample_secs.max(1)),
        spec: ClusterSpec {
            apis: 1,
            relays: 1,
            projectors: 1,
            bin_dir: PathBuf::from(
                std::env::var("CHRONICLE_LAB_BIN_DIR")
                    .unwrap_or_else(|_| "target/release".to_owned()),
            ),
            log_dir: state.join("logs/soak"),
            env: Vec::new(),
        },
    };
    println!(
        "soak: {} min at {} commands/s, one of each process from {}",
        cli.minutes,
        cli.rate,
        settings.spec.bin_dir.display()
    );
    let report = soak::run(settings).await;
    let markdown = report.markdown();
    println!("\n{markdown}");
    let dir = state.join("soak");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::write(
                dir.join("report.md"),
                format!("# ./dev soak --minutes {}\n\n{markdown}", cli.minutes),
            )
        })
        .and_then(|()| std::fs::write(dir.join("samples.csv"), report.csv()));
    if let Err(error) = written {
        println!("could not write {}: {error}", dir.display());
    }
    if report.passed() {
        println!("soak: memory flat, every process under 100 MB");
        ExitCode::SUCCESS
    } else {
        println!("soak: FAILED (memory grew, passed 100 MB, or a client got a 5xx)");
        ExitCode::FAILURE
    }
}
