//! Authentication and authorization.
//!
//! - [`keys`]: the key set: one signing key, several verification keys, by `kid`.
//! - [`token`]: issuing and verifying JWTs with one pinned algorithm.
//! - [`password`]: Argon2id hashing, off the async workers.
//! - [`revocation`]: revoked token ids, held in memory on every instance.
//! - [`caller`]: the [`Caller`] extractor: who is asking, for which tenant, in which role.
//! - [`login`]: `POST /v1/auth/token` and `POST /v1/auth/revoke`.

pub mod caller;
pub mod keys;
pub mod login;
pub mod password;
pub mod revocation;
pub mod token;

pub use caller::Caller;
