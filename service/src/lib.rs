//! What every Chronicle binary shares, so the three of them start, log, serve their
//! operations endpoints, retry and stop the same way.
//!
//! # Layout
//! - [`secret`]: [`Secret`], a string kept out of `Debug` output and logs.
//! - [`dev_guard`]: refusing development passwords outside development mode.
//! - [`logs`]: the `tracing` subscriber (`RUST_LOG`, `CHRONICLE_LOG_FORMAT=json`).
//! - [`shutdown`]: a cancellation token cancelled by SIGTERM or SIGINT, and a bound on how
//!   long stopping may take.
//! - `ops_server` (feature `ops-server`, on by default): the `/metrics` and `/healthz` server
//!   of the relay and the projector.
//! - [`retry`]: backoff between attempts at something that failed, cut short by shutdown.
//! - [`eventually`]: waiting, with a deadline, for something elsewhere to become true.

pub mod dev_guard;
pub mod eventually;
pub mod logs;
#[cfg(feature = "ops-server")]
pub mod ops_server;
pub mod retry;
pub mod secret;
pub mod shutdown;

pub use eventually::eventually;
pub use secret::Secret;
