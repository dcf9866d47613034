//! `projector`: runs every projection. `projector dlq list` shows the dead-letter topic;
//! `projector dlq redrive` hands its records back to the projections that parked them.

use std::process::ExitCode;

use projector::projections::Projection;
use projector::{Projector, ProjectorConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var("CHRONICLE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let config = match ProjectorConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["run"] => run(config).await,
        ["dlq", "list"] => dlq_list(config).await,
        ["dlq", "redrive"] => dlq_redrive(config).await,
        _ => {
            eprintln!("usage: projector [run] | projector dlq list | projector dlq redrive");
            ExitCode::from(2)
        }
    }
}

async fn run(config: ProjectorConfig) -> ExitCode {
    let projector = match Projector::build(&config, &Projection::ALL).await {
        Ok(projector) => projector,
        Err(error) => {
            tracing::error!(%error, "projector could not start");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match projector.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "projector failed");
            ExitCode::FAILURE
        }
    }
}

async fn dlq_list(config: ProjectorConfig) -> ExitCode {
    match tokio::task::spawn_blocking(move || projector::dlq::list(&config)).await {
        Ok(Ok(letters)) => {
            let mut out = std::io::stdout().lock();
            for letter in &letters {
                let _ = serde_json::to_writer(&mut out, letter);
                let _ = std::io::Write::write_all(&mut out, b"\n");
            }
            eprintln!("{} record(s) in the dead-letter topic", letters.len());
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "listing the dead-letter topic failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(%error, "listing panicked");
            ExitCode::FAILURE
        }
    }
}

async fn dlq_redrive(config: ProjectorConfig) -> ExitCode {
    match projector::dlq::redrive(&config).await {
        Ok(summary) => {
            eprintln!(
                "{} record(s) projected, {} parked again",
                summary.projected, summary.parked_again
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "re-driving failed");
            ExitCode::FAILURE
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
