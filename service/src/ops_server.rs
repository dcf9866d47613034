//! The operations server of the background processes (relay, projector): `/metrics` in
//! the OpenMetrics text format and `/healthz`, on a port of their own. The command API
//! serves its own on its HTTP port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The content type of the OpenMetrics text `prometheus_client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a process shows on its operations port.
pub trait Observed: Send + Sync + 'static {
    /// Its metrics.
    fn registry(&self) -> &Registry;

    /// Whether it is healthy, and what `/healthz` says about it.
    fn health(&self) -> Health;
}

/// A `/healthz` answer: 200 when `ok`, else 503, with `body` either way, so a supervisor
/// can act on the status and a person can read why.
#[derive(Debug, Clone)]
pub struct Health {
    pub ok: bool,
    pub body: serde_json::Value,
}

/// The registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// A `/metrics` response from rendered text.
pub fn metrics_response(text: String) -> Response {
    ([(CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// `/metrics` and `/healthz` of `observed`.
pub fn router<O: Observed>(observed: Arc<O>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics::<O>))
        .route("/healthz", get(serve_health::<O>))
        .with_state(observed)
}

async fn serve_metrics<O: Observed>(State(observed): State<Arc<O>>) -> Response {
    metrics_response(render(observed.registry()))
}

async fn serve_health<O: Observed>(State(observed): State<Arc<O>>) -> Response {
    let Health { ok, body } = observed.health();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Serves `/metrics` and `/healthz` of `observed` on `listener` until `shutdown`, in a
/// task of its own.
pub fn spawn<O: Observed>(
    listener: TcpListener,
    observed: Arc<O>,
    shutdown: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "serving metrics and health");
    tokio::spawn(async move {
        axum::serve(listener, router(observed))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    })
}
