//! Chronicle's command API: authentication, tenancy, users and customer commands over HTTP.
//!
//! # Layout
//! - [`app`]: [`Application`] (build, bind, run) and the shared [`app::AppState`].
//! - [`config`]: [`ApiConfig`], from the environment.
//! - [`auth`]: keys, JWTs, passwords, revocation, the [`auth::Caller`] extractor, login.
//! - [`tenancy`]: the in-memory tenant registry and the platform admin's endpoints.
//! - [`sync`]: keeps the in-memory registries current through LISTEN/NOTIFY.
//! - [`users`]: a tenant's users.
//! - [`customers`]: the pure customer aggregate, input validation, the command handlers.
//! - [`idempotency`]: `Idempotency-Key`, recorded in the write's own transaction.
//! - [`limits`]: rate limits for logins and per-tenant writes.
//! - [`extract`]: JSON bodies, `If-Match`, `Idempotency-Key`, each failing with a problem.
//! - [`problem`]: [`problem::ApiError`], mapped once to `application/problem+json`.
//! - [`telemetry`]: request spans (request id, tenant) and Prometheus metrics.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, the OpenAPI frame.

pub mod app;
pub mod auth;
pub mod config;
pub mod customers;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod ops;
pub mod problem;
pub mod sync;
pub mod telemetry;
pub mod tenancy;
pub mod users;

pub use app::Application;
pub use config::ApiConfig;
