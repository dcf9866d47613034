//! Operations endpoints: health, readiness, metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: a process that can answer is alive.
    #[schema(value_type = String, pattern = "^ok$")]
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// `GET /readyz`: whether each dependency answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// PostgreSQL answered a query.
    pub database: bool,
    /// Elasticsearch answered, and its cluster is not red.
    pub elasticsearch: bool,
    /// The tenant registry and revocation list are loaded and follow the change feed.
    pub tenant_registry: bool,
}

/// How long readiness waits for each dependency before it counts as unreachable.
const READINESS_BUDGET: Duration = Duration::from_secs(2);

/// Every dependency answers, each within two seconds (checked at once): PostgreSQL,
/// Elasticsearch, and the registries' change feed. 503 otherwise, never a hang.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready (which dependency is not, in the body); or, as \
         a problem with `Retry-After`, the server is at capacity", body = Readiness),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let database = async {
        let ping = sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(app.store.pool());
        matches!(
            tokio::time::timeout(READINESS_BUDGET, ping).await,
            Ok(Ok(_))
        )
    };
    let search = async {
        let health = app.es.request(
            read_model::es::Method::Get,
            "/_cluster/health?timeout=1s",
            None,
            &[],
        );
        matches!(
            tokio::time::timeout(READINESS_BUDGET, health).await,
            Ok(Ok((_, body))) if body["status"] != "red"
        )
    };
    let (database, search) = tokio::join!(database, search);
    let registry = app.ready.load(Ordering::Relaxed);
    let status = if database && search && registry {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(Readiness {
            database,
            elasticsearch: search,
            tenant_registry: registry,
        }),
    )
}

/// Prometheus metrics: request counts and latencies by method, route, status and tenant.
/// They name the tenants, so on this port only platform admins may read them; scrapers
/// read the same on the operations address (`CHRONICLE_API_METRICS_ADDR`, loopback by
/// default), as they do the relay's and the projector's.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(
    State(app): State<AppState>,
    caller: crate::auth::Caller,
) -> Result<axum::response::Response, crate::problem::ApiError> {
    caller.require_platform_admin()?;
    Ok(service::ops_server::metrics_response(
        app.http_metrics.render(),
    ))
}
