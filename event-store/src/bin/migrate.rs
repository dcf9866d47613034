//! Applies the event store's migrations as the owner role (`DATABASE_ADMIN_URL`).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    service::logs::init();

    let Ok(admin_url) = std::env::var("DATABASE_ADMIN_URL") else {
        tracing::error!(
            "DATABASE_ADMIN_URL is not set; it must name the owner role (see `./dev env`)"
        );
        return ExitCode::FAILURE;
    };
    let dev_mode = std::env::var("CHRONICLE_DEV_MODE").is_ok_and(|v| v == "true");
    if let Err(error) =
        service::dev_guard::check_database_url(dev_mode, "DATABASE_ADMIN_URL", &admin_url)
    {
        tracing::error!(%error, "refusing to run");
        return ExitCode::FAILURE;
    }
    match event_store::migrations::run(&admin_url).await {
        Ok(()) => {
            let latest = event_store::migrations::MIGRATOR
                .iter()
                .map(|m| m.version)
                .max();
            tracing::info!(latest_migration = ?latest, "database schema is up to date");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "migrations failed");
            ExitCode::FAILURE
        }
    }
}
