//! How every Chronicle process keeps its PostgreSQL connections.
//!
//! sqlx checks a connection with a round trip (`ping`) each time one is taken from the pool,
//! unless told otherwise. Under load that doubled the round trips of a create (one ping, one
//! append) and was a tenth of the API's CPU in `perf`, for connections that were in use a
//! millisecond earlier. Here only a connection that sat idle for [`CHECK_AFTER_IDLE`] is
//! pinged before it is handed out: that is the one a database restart may have cut off
//! while nobody was looking. A connection cut off while busy fails its statement either
//! way; the callers map that to a retryable error (503 with `Retry-After`, or a retry).

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;

/// How long a connection may sit unused before it is checked when next taken.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool options with Chronicle's connection check, for at most `max_connections`.
pub fn options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for < CHECK_AFTER_IDLE {
                    return Ok(true);
                }
                // A dead connection is dropped and the pool opens another.
                Ok(connection.ping().await.is_ok())
            })
        })
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::ScratchDatabase;

    #[tokio::test]
    async fn a_connection_killed_while_idle_is_replaced_not_handed_out() {
        let db = ScratchDatabase::create().await;
        let pool = options(1).connect(&db.app_url()).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
        let mut owner = db.owner_connection().await;
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert!(killed, "the pooled connection's backend was terminated");
        tokio::time::sleep(CHECK_AFTER_IDLE + Duration::from_millis(200)).await;
        let next: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("the idle, dead connection was checked and replaced");
        assert_ne!(next, pid);
    }
}
