//! `relay`: publishes the event store to Kafka. Configuration: see `relay::config`.

use std::process::ExitCode;

use relay::{Relay, RelayConfig};

#[tokio::main]
async fn main() -> ExitCode {
    service::logs::init();
    let config = match RelayConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    let relay = match Relay::build(config).await {
        Ok(relay) => relay,
        Err(error) => {
            tracing::error!(%error, "relay could not start");
            return ExitCode::FAILURE;
        }
    };
    // SIGTERM or SIGINT: finish the batch in flight, then stop.
    let shutdown = service::shutdown::on_signals("relay");
    let outcome = service::shutdown::within_grace(
        relay.run(shutdown.clone()),
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
            tracing::info!("relay stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "relay failed");
            ExitCode::FAILURE
        }
    }
}
