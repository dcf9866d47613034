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
    service::shutdown::run_to_exit("command-api", |shutdown| app.run(shutdown)).await
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
