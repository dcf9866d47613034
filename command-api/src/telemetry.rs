//! Per-request telemetry: a span carrying the request id and (once authenticated) the
//! tenant, so every log line of a request names both; and Prometheus request counts and
//! latencies labelled by tenant, route and status.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;
use tracing::field::Empty;
use uuid::Uuid;

/// What the request's middleware knows, for handlers and extractors further in.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request_id: String,
    /// `X-Correlation-ID` if the client sent one, else the request id.
    pub correlation_id: String,
    /// Set once the caller is authenticated; read back for the metrics' tenant label.
    tenant: Arc<OnceLock<String>>,
}

impl RequestContext {
    /// Records who the request is for on its span (so every later log line has it) and
    /// for its metrics.
    pub fn identify(&self, tenant: Option<&str>, user_id: Uuid) {
        let span = tracing::Span::current();
        if let Some(tenant) = tenant {
            let _ = self.tenant.set(tenant.to_owned());
            span.record("tenant", tenant);
        }
        span.record("user_id", tracing::field::display(user_id));
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
    tenant: String,
}

#[derive(Debug)]
pub struct HttpMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let mut registry = Registry::with_prefix("chronicle_http");
        registry.register(
            "requests",
            "HTTP requests by method, route, status and tenant",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "HTTP request latency",
            duration.clone(),
        );
        Self {
            registry,
            requests,
            duration,
        }
    }
}

impl HttpMetrics {
    pub fn render(&self) -> String {
        service::ops_server::render(&self.registry)
    }
}

/// The middleware: one span per request, the metrics, and a closing log line.
pub async fn observe(
    State(metrics): State<Arc<HttpMetrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Owned copies: a borrow of the request (its body is not Sync) must not live across
    // the await below, or the future is not Send.
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request_id = header("x-request-id").unwrap_or_default();
    let correlation_id = header("x-correlation-id").unwrap_or_else(|| request_id.clone());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let context = RequestContext {
        request_id: request_id.clone(),
        correlation_id,
        tenant: Arc::default(),
    };
    request.extensions_mut().insert(context.clone());

    let span = tracing::info_span!("request", %request_id, %method, %route, tenant = Empty, user_id = Empty);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();

    let status = response.status().as_u16();
    let labels = RequestLabels {
        method,
        route,
        status,
        tenant: context
            .tenant
            .get()
            .cloned()
            .unwrap_or_else(|| "-".to_owned()),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    response
}
