//! Authentication and authorization.
//!
//! - [`keys`]: the key set: one signing key, several verification keys, by `kid`.
//! - [`token`]: issuing and verifying JWTs with one pinned algorithm.
//! - [`password`]: Argon2id hashing, off the async workers.
//! - [`revocation`]: revoked token ids and ended sessions, held in memory on every instance.
//! - [`sessions`]: login sessions and their rotating refresh tokens.
//! - [`caller`]: the [`Caller`] extractor: who is asking, for which tenant, in which role.
//! - [`login`]: `POST /v1/auth/token`, `refresh`, `logout`, `revoke`, `password`.

pub mod caller;
pub mod keys;
pub mod login;
pub mod password;
pub mod revocation;
pub mod sessions;
pub mod token;

pub use caller::Caller;
