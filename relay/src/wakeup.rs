//! How the relay learns of new events. While the log is busy it reads again a few
//! milliseconds after finding nothing (`active_poll_ms`); once nothing has come for a while
//! (`idle_after_ms`) it asks to be notified and waits. Appends notify only while it asks:
//! a notification on every commit serializes commits in PostgreSQL, and under load the
//! relay is reading anyway.
//!
//! The request is one row (`relay_wakeup`, see the migration). Between asking and the
//! waiting, the relay reads once more, so nothing committed meanwhile waits for the slow
//! safety poll.

use sqlx::PgPool;

/// Says whether this relay is idle and wants appends to notify it.
pub async fn set_listening(pool: &PgPool, listening: bool) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO relay_wakeup (singleton, listening) VALUES (true, $1)
         ON CONFLICT (singleton) DO UPDATE SET listening = EXCLUDED.listening",
        listening
    )
    .execute(pool)
    .await?;
    Ok(())
}
