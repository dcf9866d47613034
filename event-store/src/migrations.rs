//! The schema, embedded in the binary. Migrations run as `chronicle_owner`
//! (`DATABASE_ADMIN_URL`); services never run them, they connect as `chronicle_app`.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;

/// Every migration under `event-store/migrations/`, in order.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects as the owner and applies whatever is not applied yet.
pub async fn run(admin_url: &str) -> Result<(), MigrateError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}
