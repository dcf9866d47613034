//! Keeps this instance's in-memory registries current: the tenant registry and the
//! revocation list are reloaded whenever PostgreSQL notifies a change, and fully after
//! every (re)connection, since notifications sent while disconnected are lost. The read
//! model's progress notes wake the readers waiting for a version (and a reconnection wakes
//! them all, to read again).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppInner;

const TENANTS: &str = "chronicle_tenants";
const REVOCATIONS: &str = "chronicle_revocations";
const READ_MODEL: &str = read_model::progress::CHANNEL;

pub async fn follow_changes(app: Arc<AppInner>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(error) = listen(&app, &shutdown).await {
            app.ready.store(false, Ordering::Relaxed);
            tracing::warn!(%error, "lost the change feed; reconnecting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

async fn listen(app: &AppInner, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
    let pool = app.store.pool();
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener
        .listen_all([TENANTS, REVOCATIONS, READ_MODEL])
        .await?;
    app.tenants.reload(pool).await?;
    app.revocations.reload(pool).await?;
    app.version_waits.wake_all();
    app.ready.store(true, Ordering::Relaxed);
    loop {
        let notification = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            notification = listener.try_recv() => notification?,
        };
        let Some(notification) = notification else {
            // The connection dropped; sqlx reconnects on the next call, and we reload
            // everything since notifications may have been missed meanwhile.
            app.tenants.reload(pool).await?;
            app.revocations.reload(pool).await?;
            app.version_waits.wake_all();
            continue;
        };
        match notification.channel() {
            TENANTS => app.tenants.reload_one(pool, notification.payload()).await?,
            REVOCATIONS => app.revocations.reload(pool).await?,
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
