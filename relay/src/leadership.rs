//! One active relay at a time.
//!
//! The active relay holds a session-level PostgreSQL advisory lock on a connection of its
//! own. Others poll for it every second; when the holder dies its connection closes, the
//! lock is released, and a standby takes over within about a second. The holder checks
//! its connection before every batch: if it is gone, so is the lock, and it stops.
//!
//! A holder cut off from PostgreSQL may finish the batch in flight while a standby takes
//! over; that can duplicate records, never lose or reorder a stream's first delivery, and
//! consumers are idempotent by stream version.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::{RelayConfig, RelayError};

/// How often a standby tries for the lock, and the holder re-checks it.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Leadership {
    connection: PgConnection,
    last_confirmed: Instant,
}

impl Leadership {
    /// Waits until this instance holds the relay lock; `None` on shutdown.
    pub async fn acquire(config: &RelayConfig, shutdown: &CancellationToken) -> Option<Self> {
        let mut waiting_logged = false;
        loop {
            match try_acquire(config).await {
                Ok(Some(connection)) => {
                    return Some(Self {
                        connection,
                        last_confirmed: Instant::now(),
                    });
                }
                Ok(None) if !waiting_logged => {
                    tracing::info!(relay = %config.relay_name, "another relay is active; standing by");
                    waiting_logged = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "could not try for the relay lock"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
        }
    }

    /// Fails with [`RelayError::LostLeadership`] when the lock's connection is gone.
    /// Checks at most once per [`CHECK_INTERVAL`].
    pub async fn confirm(&mut self) -> Result<(), RelayError> {
        if self.last_confirmed.elapsed() < CHECK_INTERVAL {
            return Ok(());
        }
        let alive = tokio::time::timeout(CHECK_INTERVAL * 5, self.connection.ping()).await;
        match alive {
            Ok(Ok(())) => {
                self.last_confirmed = Instant::now();
                Ok(())
            }
            _ => Err(RelayError::LostLeadership),
        }
    }
}

async fn try_acquire(config: &RelayConfig) -> Result<Option<PgConnection>, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose().parse()?;
    let mut connection =
        PgConnection::connect_with(&options.application_name("chronicle-relay-lock")).await?;
    let lock_name = format!("chronicle.relay:{}", config.relay_name);
    let acquired = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS "acquired!""#,
        lock_name
    )
    .fetch_one(&mut connection)
    .await?;
    if acquired {
        Ok(Some(connection))
    } else {
        connection.close().await?;
        Ok(None)
    }
}
