//! Password hashing: Argon2id with OWASP's parameters (19 MiB, 2 iterations, 1 lane).
//! Hashing takes tens of milliseconds of CPU, so it runs on the blocking pool, never on
//! an async worker.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::problem::ApiError;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's Argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` (PHC string format, salt included).
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand_core::OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// True when `password` matches `hash`. A malformed hash never matches.
pub async fn verify(hash: String, password: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(ApiError::internal)
}

/// The longest password accepted, in characters.
pub const MAX_CHARS: usize = 128;
/// The shortest.
pub const MIN_CHARS: usize = 12;

/// What a password must be: long enough, and bounded, since hashing a megabyte would be a
/// cheap way to spend the server's CPU.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        0..MIN_CHARS => Err("must be at least 12 characters"),
        129.. => Err("must be at most 128 characters"),
        _ => Ok(()),
    }
}

/// False for a password no account can have (too long to have been accepted), so that
/// a login can refuse it without spending a hash. Short ones are still checked: accounts
/// made before a stricter rule may have them.
pub fn could_match(password: &str) -> bool {
    password.len() <= MAX_CHARS * 4 && password.chars().count() <= MAX_CHARS
}
