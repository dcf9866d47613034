//! What a replay talks to ([`Context`]: the store, Elasticsearch, the owner role when it
//! builds tables) and the lock that keeps two replays of one projection apart.

use std::time::Duration;

use event_store::EventStore;
use read_model::Es;
use sqlx::{Connection, PgConnection, PgPool};

use super::ReplayError;
use super::build::BuildTarget;
use super::verify::Verifier;
use crate::config::ProjectorConfig;
use crate::projections::{ProjectionRef, Sinks};

/// Everything a replay talks to.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: ProjectorConfig,
    pub store: EventStore,
    pub es: Es,
    owner: Option<PgPool>,
}

impl Context {
    pub async fn connect(config: &ProjectorConfig, owner: bool) -> Result<Self, ReplayError> {
        let pool = event_store::pool::options(4)
            .connect(config.database_url.expose())
            .await?;
        let owner = if owner {
            Some(
                event_store::pool::options(2)
                    .connect(config.database_admin_url.expose())
                    .await?,
            )
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            store: EventStore::new(pool),
            es: Es::new(&config.elasticsearch_url)?,
            owner,
        })
    }

    pub fn owner(&self) -> &PgPool {
        self.owner
            .as_ref()
            .expect("connected as the owner for the read model")
    }

    /// Whether any of `projections` lives in a table (replaying it takes the owner role).
    pub fn writes_tables(projections: &[ProjectionRef]) -> bool {
        projections
            .iter()
            .any(|p| matches!(p.storage(), crate::projections::Storage::Table(_)))
    }

    pub fn prefix(&self) -> &str {
        &self.config.index_prefix
    }

    pub fn live_sinks(&self) -> Sinks {
        Sinks::live(self.store.clone(), self.es.clone(), self.prefix())
    }

    /// Where a projection's build writes: `name`, for one tenant in place or a new
    /// generation.
    pub fn build_target(
        &self,
        name: String,
        tenant: Option<event_store::TenantId>,
        dry_run: bool,
    ) -> BuildTarget {
        BuildTarget {
            name,
            tenant,
            dry_run,
            es: self.es.clone(),
            bulk_docs: self.config.replay_bulk_docs,
            owner: self.owner.clone(),
        }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            sinks: self.live_sinks(),
            attempts: self.config.verify_attempts,
            pause: Duration::from_secs(1),
        }
    }
}

/// One replay (or rollback) per projection at a time: session advisory locks held on a
/// connection of its own, released when it closes (also when the process dies).
#[derive(Debug)]
pub struct ReplayLock {
    _connection: PgConnection,
}

impl ReplayLock {
    pub async fn take(
        config: &ProjectorConfig,
        projections: &[ProjectionRef],
    ) -> Result<Self, ReplayError> {
        let mut connection = PgConnection::connect(config.database_url.expose()).await?;
        for projection in projections {
            let taken: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtext('chronicle.replay.' || $1))",
            )
            .bind(projection.name())
            .fetch_one(&mut connection)
            .await?;
            if !taken {
                return Err(ReplayError::Busy(projection.name()));
            }
        }
        Ok(Self {
            _connection: connection,
        })
    }
}
