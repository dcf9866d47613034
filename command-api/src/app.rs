//! [`Application`]: built from a config by `main` and by the tests alike, bound to its
//! port before it runs (port 0 works), stopped by a cancellation token.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::middleware;
use axum::response::IntoResponse;
use axum::{BoxError, Router};
use event_store::EventStore;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::access::{RoleRegistry, UserDirectory};
use crate::auth::keys::{KeyError, KeySet};
use crate::auth::revocation::RevocationList;
use crate::auth::sessions::Sessions;
use crate::auth::token::TokenService;
use crate::auth::{login, password};
use crate::config::ApiConfig;
use crate::idempotency::FingerprintKey;
use crate::limits::Limits;
use crate::problem::ApiError;
use crate::state::{AppInner, AppState};
use crate::telemetry::HttpMetrics;
use crate::tenancy::TenantRegistry;
use crate::version_waits::VersionWaits;
use crate::{customers, openapi, ops, request_ids, roles, server, sync, tenancy, users};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("jwt keys: {0}")]
    Keys(#[from] KeyError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("listening: {0}")]
    Io(#[from] std::io::Error),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] read_model::EsError),
    #[error("CHRONICLE_BOOTSTRAP_ADMIN: {0}")]
    Bootstrap(String),
    #[error("{0}")]
    DevelopmentSecret(#[from] service::dev_guard::DevelopmentSecret),
    #[error("CHRONICLE_IDEMPOTENCY_SECRET must be at least 32 bytes")]
    WeakIdempotencySecret,
}

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: ApiConfig) -> Result<Self, StartupError> {
        service::dev_guard::check_database_url(
            config.dev_mode,
            "DATABASE_URL",
            config.database_url.expose(),
        )?;
        if let Some(admin) = &config.bootstrap_admin
            && let Some((_, password)) = admin.expose().split_once(':')
        {
            service::dev_guard::check_password(
                config.dev_mode,
                "CHRONICLE_BOOTSTRAP_ADMIN",
                password,
            )?;
        }
        let keys = KeySet::from_config(&config)?;
        let fingerprints = match &config.idempotency_secret {
            Some(secret) if secret.expose().len() >= 32 => {
                FingerprintKey::new(secret.expose().as_bytes())
            }
            Some(_) => return Err(StartupError::WeakIdempotencySecret),
            None => keys.derived_fingerprint_key(),
        };
        // A request waits at most the acquire budget for a connection; beyond it the pool is
        // saturated and the client is told to retry (503), never left hanging or given a 500.
        let pool = event_store::pool::options(config.db_pool_size.max(2))
            .acquire_timeout(Duration::from_millis(config.db_acquire_timeout_ms))
            .connect_with(
                PgConnectOptions::from_str(config.database_url.expose())?
                    .application_name("command-api"),
            )
            .await?;
        if let Some(admin) = &config.bootstrap_admin {
            bootstrap_platform_admin(&pool, admin.expose()).await?;
        }
        let dummy_password_hash = password::hash(uuid::Uuid::now_v7().to_string())
            .await
            .map_err(|e| StartupError::Bootstrap(e.to_string()))?;
        let tokens = TokenService::new(
            keys,
            config.jwt_issuer.clone(),
            config.jwt_audience.clone(),
            Duration::from_secs(config.jwt_ttl_secs),
        );
        let es = read_model::Es::with_timeout(
            &config.elasticsearch_url,
            Duration::from_millis(config.elasticsearch_timeout_ms),
        )?;
        let state = AppState::new(AppInner {
            es,
            limits: Limits::from_config(&config),
            store: EventStore::new(pool.clone()),
            tokens,
            fingerprints,
            tenants: TenantRegistry::default(),
            users: UserDirectory::default(),
            roles: RoleRegistry::default(),
            sessions: Sessions {
                window: chrono::Duration::seconds(
                    i64::try_from(config.refresh_window_secs).unwrap_or(i64::MAX / 2),
                ),
                access_lifetime: chrono::Duration::seconds(
                    i64::try_from(config.jwt_ttl_secs).unwrap_or(i64::MAX / 2) + 60,
                ),
            },
            revocations: RevocationList::default(),
            http_metrics: Arc::new(HttpMetrics::new(config.metrics_max_tenants)),
            dummy_password_hash,
            ready: AtomicBool::new(false),
            version_waits: VersionWaits::new(
                config.min_version_waits_per_tenant,
                config.min_version_waits_total,
            ),
            config,
        });
        state.tenants.reload(&pool).await?;
        state.users.reload(&pool).await?;
        state.roles.reload(&pool).await?;
        state.revocations.reload(&pool).await?;
        let listener = TcpListener::bind(&state.config.http_addr).await?;
        let metrics_listener = TcpListener::bind(&state.config.metrics_addr).await?;
        Ok(Self {
            listener,
            metrics_listener,
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` for scrapers is served (useful with port 0).
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves until `shutdown`, then finishes the requests in flight.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Self {
            listener,
            metrics_listener,
            state,
        } = self;
        tokio::spawn(sync::follow_changes(state.shared(), shutdown.clone()));
        tokio::spawn(housekeeping(state.clone(), shutdown.clone()));
        let ops = service::ops_server::spawn(
            metrics_listener,
            state.http_metrics.clone(),
            shutdown.clone(),
        );
        tracing::info!(addr = %listener.local_addr()?, "command api listening");
        let limits = server::ServerLimits {
            header_read_timeout: Duration::from_millis(state.config.http_header_timeout_ms),
            max_connections: state.config.http_max_connections,
        };
        let served = server::serve(listener, router(state), limits, shutdown).await;
        let _ = ops.await;
        served
    }
}

/// Every route, with the OpenAPI description generated from the handlers.
pub fn router(state: AppState) -> Router {
    let max_in_flight = state.config.http_max_in_flight.max(1);
    let request_timeout = Duration::from_millis(state.config.http_request_timeout_ms);
    let (router, api) = routes().split_for_parts();
    // Serialized once: the document does not change while the server runs.
    let document = axum::body::Bytes::from(
        serde_json::to_vec(&openapi::published(api)).expect("the document serializes"),
    );
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                std::future::ready(
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        document.clone(),
                    )
                        .into_response(),
                )
            }),
        )
        .route_layer(middleware::from_fn_with_state(
            state.http_metrics.clone(),
            crate::telemetry::observe,
        ))
        .fallback(|| std::future::ready(ApiError::NotFound))
        .method_not_allowed_fallback(|| std::future::ready(ApiError::MethodNotAllowed))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(request_ids::check))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::Internal("handler panicked".to_owned()).into_response()
                }))
                // Beyond the configured number of requests in flight the server is saturated:
                // refuse at once with a 503 and Retry-After rather than queue without bound.
                // One semaphore for the whole server (a router layers each route apart).
                // A request not done within its time (a body that trickles in) is a 408.
                .layer(HandleErrorLayer::new(|error: BoxError| {
                    std::future::ready(if error.is::<tower::timeout::error::Elapsed>() {
                        ApiError::RequestTimeout
                    } else {
                        ApiError::Unavailable {
                            what: "the server is at capacity",
                            retry_after_secs: 1,
                        }
                    })
                }))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(max_in_flight))
                .timeout(request_timeout),
        )
        .with_state(state)
}

/// Every resource's routes, with the OpenAPI description generated from their handlers.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(login::router())
        .merge(tenancy::handlers::router())
        .merge(tenancy::signup::router())
        .merge(users::router())
        .merge(roles::router())
        .merge(customers::handlers::router())
        .merge(customers::reads::router())
        .merge(ops::router())
}

/// The OpenAPI document `GET /openapi.json` serves.
pub fn openapi_document() -> serde_json::Value {
    openapi::published(routes().split_for_parts().1)
}

/// Creates the first platform admin from `username:password` when none exists yet.
async fn bootstrap_platform_admin(pool: &PgPool, spec: &str) -> Result<(), StartupError> {
    let (username, password) = spec
        .split_once(':')
        .ok_or_else(|| StartupError::Bootstrap("expected `username:password`".to_owned()))?;
    let username = schemas::Username::parse(username)
        .map_err(|e| StartupError::Bootstrap(format!("username {e}")))?;
    password::check_strength(password)
        .map_err(|e| StartupError::Bootstrap(format!("password {e}")))?;
    let exists =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM platform_admins) AS "exists!""#)
            .fetch_one(pool)
            .await?;
    if exists {
        return Ok(());
    }
    let hash = password::hash(password.to_owned())
        .await
        .map_err(|e| StartupError::Bootstrap(e.to_string()))?;
    sqlx::query!(
        "INSERT INTO platform_admins (user_id, username, display_name, password_hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT (username) DO NOTHING",
        uuid::Uuid::now_v7(),
        username.as_str(),
        "Platform Admin",
        hash
    )
    .execute(pool)
    .await?;
    tracing::info!(%username, "bootstrap platform admin created");
    Ok(())
}

/// Periodic upkeep: idle rate-limit buckets and expired idempotency records.
async fn housekeeping(state: AppState, shutdown: CancellationToken) {
    let every = Duration::from_secs(state.config.housekeeping_interval_secs.max(1));
    let mut ticks = tokio::time::interval(every);
    // Purges run about hourly, whatever the interval.
    let purge_every = (3_600 / every.as_secs()).max(1);
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        state.limits.forget_idle();
        if let Err(error) = tenancy::signup::abandon_stale(&state).await {
            tracing::warn!(%error, "looking for unfinished sign-ups failed");
        }
        if rounds.is_multiple_of(purge_every) {
            match sqlx::query_scalar!("SELECT purge_expired_idempotency_keys()")
                .fetch_one(state.store.pool())
                .await
            {
                Ok(purged) => tracing::debug!(?purged, "expired idempotency records purged"),
                Err(error) => tracing::warn!(%error, "purging idempotency records failed"),
            }
            match state.sessions.purge(state.store.pool()).await {
                Ok(purged) => tracing::debug!(purged, "expired refresh tokens and sessions purged"),
                Err(error) => tracing::warn!(%error, "purging refresh tokens failed"),
            }
        }
        rounds += 1;
    }
}
