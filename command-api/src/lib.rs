//! Chronicle's command API: authentication, tenancy, users and customer commands over HTTP.
//!
//! # Layout
//! - [`app`]: [`Application`] (build, bind, run) and the router of every resource.
//! - [`state`]: [`state::AppState`], the services every handler may use.
//! - [`config`]: [`ApiConfig`], from the environment.
//! - [`auth`]: keys, JWTs, passwords, revocation, login sessions and refresh tokens, the
//!   [`auth::Caller`] extractor, login.
//! - [`access`]: who may do what, in memory: the user directory and the tenants' roles.
//! - [`tenancy`]: the tenant aggregate, the in-memory registry, the platform admin's
//!   endpoints, sign-up, the tenant named by host.
//! - [`roles`]: a tenant's own roles: `GET/POST/PATCH/DELETE /v1/roles`.
//! - [`sync`]: keeps the in-memory registries current through LISTEN/NOTIFY.
//! - [`users`]: a tenant's users: the aggregate, validation, the administration endpoints.
//! - [`commands`]: the one command pipeline every write goes through.
//! - [`customers`]: the pure customer aggregate, input validation, the command handlers, the
//!   reads and the shapes the API gives them.
//! - [`idempotency`]: `Idempotency-Key`, recorded in the write's own transaction.
//! - [`limits`]: rate limits for logins and per-tenant writes.
//! - [`extract`]: JSON bodies, `If-Match`, `Idempotency-Key`, each failing with a problem.
//! - [`server`]: the HTTP server: header and idle timeouts, a connection cap, graceful stop.
//! - [`request_ids`]: `X-Request-ID` / `X-Correlation-ID` bounded before anything reads them.
//! - [`problem`]: [`problem::ApiError`], mapped once to `application/problem+json`.
//! - [`telemetry`]: request spans (request id, tenant) and Prometheus metrics.
//! - [`version_waits`]: reads waiting for `?min_version`, woken by the read model's progress.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`openapi`]: the published OpenAPI document: its frame, what every operation shares,
//!   the schemas of what clients send.
//! - `testing` (feature `testing`): the API on port 0 for a test, driven over HTTP.

pub mod access;
pub mod app;
pub mod auth;
pub mod commands;
pub mod config;
pub mod customers;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod request_ids;
pub mod roles;
pub mod server;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod tenancy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;
pub mod version_waits;

pub use app::Application;
pub use config::ApiConfig;
