//! The schema, embedded in the binary. Migrations run as `chronicle_owner`
//! (`DATABASE_ADMIN_URL`); services never run them, they connect as `chronicle_app`.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;

/// Every migration under `event-store/migrations/`, in order.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects as the owner and applies whatever is not applied yet.
///
/// Migrations applied by a newer build but unknown to this one are tolerated, so an older
/// binary (a rollback, another checkout sharing the database) still runs against a newer
/// schema; migrations only ever add.
pub async fn run(admin_url: &str) -> Result<(), MigrateError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await?;
    let mut migrator: Migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(&pool).await?;
    pool.close().await;
    Ok(())
}
