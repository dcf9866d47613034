//! The lab: Chronicle's real processes on this machine under a steady write load, for the
//! runs that prove it from outside: fault injection (`./dev chaos`, [`chaos`]) and soak
//! (`./dev soak`, [`soak`]).
//!
//! - [`cluster`]: the binaries as OS processes, any number of each, on a scratch database
//!   and prefixes of their own; kill -9, restart, SIGTERM.
//! - [`load`]: the careful client (idempotency keys, retries, failover) and its ledger.
//! - [`verify`]: store, Kafka and projections against what the ledger says was accepted.

pub mod chaos;
pub mod cluster;
pub mod load;
pub mod soak;
pub mod verify;
