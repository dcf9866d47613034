//! `command-api`: serves the HTTP API. `command-api generate-keys --dir DIR [--kid KID]`
//! writes a new Ed25519 signing key pair for JWTs.

use std::path::PathBuf;
use std::process::ExitCode;

use command_api::{ApiConfig, Application};

#[tokio::main]
async fn main() -> ExitCode {
    service::logs::init();

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
    // SIGTERM or SIGINT: stop accepting, finish the requests in flight, exit.
    let shutdown = service::shutdown::on_signals("command-api");
    let outcome = service::shutdown::within_grace(
        app.run(shutdown.clone()),
        &shutdown,
        service::shutdown::GRACE,
    )
    .await;
    let Some(outcome) = outcome else {
        // Abandoned work may sit in blocking calls a runtime would wait for: exit now.
        std::process::exit(1);
    };
    match outcome {
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
