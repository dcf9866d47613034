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
    service::shutdown::run_to_exit("relay", |shutdown| relay.run(shutdown)).await
}
