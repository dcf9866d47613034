//! Chronicle's projector: Kafka in; the PostgreSQL read model and the Elasticsearch
//! indices out.
//!
//! # Layout
//! - [`app`]: [`Projector`], every projection of a process, with metrics.
//! - [`config`]: [`ProjectorConfig`], from the environment.
//! - [`runner`]: one projection's consumer loop: batch, project, park poison, commit.
//! - [`projections`]: the four projections (customers, search, history, audit).
//! - [`views`]: customers folded from their streams, and their change history.
//! - [`dlq`]: the dead-letter topic: parking, listing, re-driving.
//! - [`metrics`]: per-projection lag and counts, and `/healthz`.
//! - [`replay`]: rebuilding projections from the event store, rollback, verification.
//!
//! The projections fed by a real relay are tested in the `e2e` crate (`e2e::pipeline`): the
//! projector does not depend on the relay, only on the wire format both speak (`kafka_wire`).

pub mod app;
pub mod config;
pub mod dlq;
pub mod metrics;
pub mod projections;
pub mod replay;
pub mod runner;
pub mod views;

pub use app::Projector;
pub use config::ProjectorConfig;
