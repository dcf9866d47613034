//! [`AppState`]: what every request handler may use, one per process. It holds services,
//! never handlers: handler modules import it, and only `app` imports the handlers.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use event_store::EventStore;
use read_model::Es;

use crate::access::{RoleRegistry, UserDirectory};
use crate::auth::revocation::RevocationList;
use crate::auth::sessions::Sessions;
use crate::auth::token::TokenService;
use crate::config::ApiConfig;
use crate::idempotency::FingerprintKey;
use crate::limits::Limits;
use crate::telemetry::HttpMetrics;
use crate::tenancy::TenantRegistry;
use crate::version_waits::VersionWaits;

/// Everything a request handler may need; one per process, shared.
#[derive(Debug)]
pub struct AppInner {
    pub config: ApiConfig,
    pub store: EventStore,
    pub tokens: TokenService,
    /// Keys the fingerprints of requests sent with an `Idempotency-Key`.
    pub fingerprints: FingerprintKey,
    pub tenants: TenantRegistry,
    /// Every tenant user's role, status and session cut-off.
    pub users: UserDirectory,
    /// Each tenant's own roles.
    pub roles: RoleRegistry,
    /// Login sessions and their refresh tokens.
    pub sessions: Sessions,
    pub revocations: RevocationList,
    pub limits: Limits,
    pub http_metrics: Arc<HttpMetrics>,
    /// The projections' Elasticsearch, for search, history and audit reads.
    pub es: Es,
    /// Checked when a login names no known account, so that a miss costs as much time as
    /// a wrong password and the two cannot be told apart.
    pub dummy_password_hash: String,
    /// False until the registries are loaded, and while their change feed is down.
    pub ready: AtomicBool,
    /// Readers waiting for a customer version (`?min_version`).
    pub version_waits: VersionWaits,
}

#[derive(Debug, Clone)]
pub struct AppState(Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }

    /// The shared state itself, for tasks that outlive a request (the change feed).
    pub fn shared(&self) -> Arc<AppInner> {
        self.0.clone()
    }
}
