//! Keeps this instance's in-memory registries current: the tenant registry, the user
//! directory, the tenants' roles and the revocation list are reloaded whenever PostgreSQL notifies a change, and fully after
//! every (re)connection, since notifications sent while disconnected are lost. The read
//! model's progress notes wake the readers waiting for a version (and a reconnection wakes
//! them all, to read again).
//!
//! The feed fails closed: while it is down (and until the reload after reconnecting is
//! done) `ready` is false and authenticated requests get 503, because a revocation or a
//! suspension committed meanwhile would otherwise go unnoticed. The order on (re)connect
//! is LISTEN first, then reload: a change committed in between is both in the reload and
//! notified, never in neither. A connection that dies silently (no FIN, say a partition)
//! is found by a probe on the listening connection every few seconds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::state::AppInner;

const TENANTS: &str = "chronicle_tenants";
const REVOCATIONS: &str = "chronicle_revocations";
const USERS: &str = "chronicle_users";
const ROLES: &str = "chronicle_roles";
const READ_MODEL: &str = read_model::progress::CHANNEL;

/// How often the listening connection is probed when no notification arrives.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long a probe (or the reload) may take before the feed counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn follow_changes(app: Arc<AppInner>, shutdown: CancellationToken) {
    // A connection of its own, named, so that operators (and tests) can tell it apart in
    // pg_stat_activity from the request pool's.
    let options = (*app.store.pool().connect_options())
        .clone()
        .application_name("command-api change feed");
    let feed = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    while !shutdown.is_cancelled() {
        let outcome = listen(&app, &feed, &shutdown).await;
        app.ready.store(false, Ordering::Release);
        if shutdown.is_cancelled() {
            return;
        }
        match outcome {
            Ok(()) => tracing::warn!("the change feed's connection closed; reconnecting"),
            Err(error) => tracing::warn!(%error, "lost the change feed; reconnecting"),
        }
        app.version_waits.wake_all();
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("no answer from the listening connection within {PROBE_TIMEOUT:?}")]
    Silent,
}

/// Returns when the connection is lost (never with `ready` left true; the caller clears it).
async fn listen(
    app: &AppInner,
    feed: &PgPool,
    shutdown: &CancellationToken,
) -> Result<(), FeedError> {
    let pool = app.store.pool();
    let mut listener = PgListener::connect_with(feed).await?;
    // A dropped connection must end this function, not be silently re-established by
    // sqlx: the reload has to follow the LISTEN, which only a fresh pass here guarantees.
    listener.ignore_pool_close_event(true);
    listener
        .listen_all([TENANTS, REVOCATIONS, USERS, ROLES, READ_MODEL])
        .await?;
    bounded(async {
        app.tenants.reload(pool).await?;
        app.users.reload(pool).await?;
        app.roles.reload(pool).await?;
        app.revocations.reload(pool).await
    })
    .await?;
    app.version_waits.wake_all();
    app.ready.store(true, Ordering::Release);
    loop {
        let notification = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            notification = listener.try_recv() => notification?,
            () = tokio::time::sleep(PROBE_EVERY) => {
                bounded(async { sqlx::query("SELECT 1").execute(&mut listener).await.map(drop) }).await?;
                continue;
            }
        };
        let Some(notification) = notification else {
            return Ok(());
        };
        match notification.channel() {
            TENANTS => bounded(app.tenants.reload_one(pool, notification.payload())).await?,
            REVOCATIONS => bounded(app.revocations.reload(pool)).await?,
            USERS => bounded(app.users.reload_one(pool, notification.payload())).await?,
            ROLES => bounded(app.roles.reload_tenant(pool, notification.payload())).await?,
            READ_MODEL => {
                if let Some((tenant, changes)) = read_model::progress::parse(notification.payload())
                {
                    app.version_waits.advanced(tenant, &changes);
                }
            }
            _ => {}
        }
    }
}

async fn bounded<T>(work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, FeedError> {
    match tokio::time::timeout(PROBE_TIMEOUT, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(FeedError::Silent),
    }
}
