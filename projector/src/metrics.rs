//! Per-projection metrics and health, on the projector's metrics port: records projected,
//! records parked in the dead-letter topic, and lag (records behind, seconds behind).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service::ops_server::{Health, Observed};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabel {
    pub projection: String,
}

#[derive(Debug)]
pub struct ProjectorMetrics {
    registry: Registry,
    pub projected: Family<ProjectionLabel, Counter>,
    pub dead_lettered: Family<ProjectionLabel, Counter>,
    pub lag_events: Family<ProjectionLabel, Gauge>,
    pub lag_seconds: Family<ProjectionLabel, Gauge<f64, AtomicU64>>,
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chronicle_projector");
        let metrics = Self {
            projected: Family::default(),
            dead_lettered: Family::default(),
            lag_events: Family::default(),
            lag_seconds: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "projected_records",
            "Records written by each projection",
            metrics.projected.clone(),
        );
        registry.register(
            "dead_lettered_records",
            "Records parked in the dead-letter topic",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "lag_events",
            "Records on the projection's topics not yet projected",
            metrics.lag_events.clone(),
        );
        registry.register(
            "lag_seconds",
            "How old the newest projected event is while records wait",
            metrics.lag_seconds.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl ProjectorMetrics {
    pub fn label(projection: &str) -> ProjectionLabel {
        ProjectionLabel {
            projection: projection.to_owned(),
        }
    }
}

impl Observed for ProjectorMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Each projection's lag.
    fn health(&self) -> Health {
        let projections: serde_json::Map<String, serde_json::Value> =
            crate::projections::Projection::ALL
                .iter()
                .map(|p| {
                    let label = Self::label(p.name());
                    (
                        p.name().to_owned(),
                        serde_json::json!({
                            "lag_events": self.lag_events.get_or_create(&label).get(),
                            "lag_seconds": self.lag_seconds.get_or_create(&label).get(),
                        }),
                    )
                })
                .collect();
        Health {
            ok: true,
            body: serde_json::json!({ "status": "ok", "projections": projections }),
        }
    }
}
