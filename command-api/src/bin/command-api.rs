//! `command-api`: serves the HTTP API. `command-api generate-keys --dir DIR [--kid KID]`
//! writes a new Ed25519 signing key pair for JWTs.

use std::path::PathBuf;
use std::process::ExitCode;

use command_api::{ApiConfig, Application};
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
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("generate-keys") {
        return generate_keys(&args[1..]);
    }

    let config = match ApiConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "command api could not start");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match app.run(shutdown).await {
        Ok(()) => {
            tracing::info!("command api stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "command api failed");
            ExitCode::FAILURE
        }
    }
}

fn generate_keys(args: &[String]) -> ExitCode {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(dir) = value("--dir").map(PathBuf::from) else {
        tracing::error!("usage: command-api generate-keys --dir DIR [--kid KID]");
        return ExitCode::from(2);
    };
    let kid = value("--kid")
        .unwrap_or_else(|| format!("key-{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    match command_api::auth::keys::write_key_pair(&dir, &kid) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), %kid, "wrote a new JWT signing key pair");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "could not write the key pair");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT: stop accepting, finish the requests in flight, exit.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down: draining requests in flight");
    shutdown.cancel();
}
