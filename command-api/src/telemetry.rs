//! Per-request telemetry: a span carrying the request id and (once authenticated) the
//! tenant, so every log line of a request names both; and Prometheus request counts and
//! latencies labelled by tenant, route and status.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
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

/// Request metrics. The `tenant` label is bounded (the cardinality plan): the first
/// `max_tenants` tenants seen get a label of their own, every later one is counted as
/// `other`, so a platform with many tenants cannot grow the series without bound. (Per-
/// tenant detail beyond that belongs to logs, which carry the tenant on every line.)
#[derive(Debug)]
pub struct HttpMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    labelled_tenants: Mutex<HashSet<String>>,
    max_tenants: usize,
}

impl HttpMetrics {
    pub fn new(max_tenants: usize) -> Self {
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
            labelled_tenants: Mutex::default(),
            max_tenants,
        }
    }

    /// The label value of `tenant`: its id while there is room, `other` after.
    fn tenant_label(&self, tenant: Option<&String>) -> String {
        let Some(tenant) = tenant else {
            return "-".to_owned();
        };
        let mut labelled = self
            .labelled_tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if labelled.contains(tenant) {
            return tenant.clone();
        }
        if labelled.len() < self.max_tenants {
            labelled.insert(tenant.clone());
            return tenant.clone();
        }
        "other".to_owned()
    }
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
    // Clients may send any token as a method: only the standard ones get a label (and a
    // log field) of their own, so neither grows with what clients invent.
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS => request.method().to_string(),
        _ => "OTHER".to_owned(),
    };
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
        tenant: metrics.tenant_label(context.tenant.get()),
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

impl service::ops_server::Observed for HttpMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The operations address answers while the process runs; readiness (dependencies)
    /// is `/readyz` on the API's port.
    fn health(&self) -> service::ops_server::Health {
        service::ops_server::Health {
            ok: true,
            body: serde_json::json!({ "status": "ok" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_label_is_bounded() {
        let metrics = HttpMetrics::new(2);
        let label = |t: &str| metrics.tenant_label(Some(&t.to_owned()));
        assert_eq!(label("acme"), "acme");
        assert_eq!(label("globex"), "globex");
        assert_eq!(label("initech"), "other");
        assert_eq!(label("acme"), "acme", "those labelled keep their label");
        assert_eq!(metrics.tenant_label(None), "-");
    }
}
