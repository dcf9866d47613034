//! JWTs: issued with the signing key, verified with the key its `kid` names, under one
//! pinned algorithm. `exp`, `nbf`, `iss`, `aud` and `sub` are required and checked
//! (`jsonwebtoken` checks `iss`/`aud` only when they are listed as required claims).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::keys::KeySet;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The user's display name, recorded as the actor name of the events they cause.
    pub name: String,
    /// The tenant; absent for platform admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The role when the token was issued (informational: requests use the current one).
    pub role: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// Unique per token, so one token can be revoked.
    pub jti: Uuid,
    /// The login session (refresh token family): ending it refuses every token of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// Who a token is issued to.
#[derive(Debug, Clone)]
pub struct Subject {
    pub user_id: Uuid,
    pub display_name: String,
    pub tenant: Option<String>,
    pub role: String,
    /// The login session the token belongs to.
    pub session: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token has no `kid`")]
    MissingKid,
    #[error("no key with kid `{0}`")]
    UnknownKid(String),
    #[error("{0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

#[derive(Debug)]
pub struct TokenService {
    keys: KeySet,
    issuer: String,
    audience: String,
    lifetime: Duration,
    /// Tokens already verified, by a digest of their text, with their claims. A client
    /// sends the same token with every request of its life, and an Ed25519 verification
    /// costs more than the rest of a small write; the signature over the same bytes cannot
    /// come out differently the second time. Expiry is checked again on every hit;
    /// revocation is the caller's, on every request.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

/// Verified tokens kept at most; the cache starts over when full (a bound, not an LRU:
/// simple, and a miss only costs one verification).
const VERIFIED_CAPACITY: usize = 10_000;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 5;

impl TokenService {
    pub fn new(keys: KeySet, issuer: String, audience: String, lifetime: Duration) -> Self {
        Self {
            keys,
            issuer,
            audience,
            lifetime,
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn issue(&self, subject: &Subject) -> Result<(String, Claims), TokenError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: subject.user_id,
            name: subject.display_name.clone(),
            tenant: subject.tenant.clone(),
            role: subject.role.clone(),
            iat: now,
            nbf: now,
            exp: now + i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::now_v7(),
            sid: subject.session,
        };
        let (kid, key) = self.keys.signing();
        let mut header = Header::new(self.keys.algorithm());
        header.kid = Some(kid.to_owned());
        Ok((encode(&header, &claims, key)?, claims))
    }

    /// Verifies signature, algorithm, expiry, not-before, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Utc::now().timestamp();
        let cached = self
            .verified
            .lock()
            .expect("token cache lock")
            .get(&digest)
            .cloned();
        if let Some(claims) = cached {
            if claims.exp + LEEWAY_SECS > now && claims.nbf - LEEWAY_SECS <= now {
                return Ok(claims);
            }
            self.verified
                .lock()
                .expect("token cache lock")
                .remove(&digest);
        }
        let claims = self.verify_signed(token)?;
        let mut verified = self.verified.lock().expect("token cache lock");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Ok(claims)
    }

    /// The full verification, without the cache.
    fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token)?;
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let key = self
            .keys
            .verification(&kid)
            .ok_or_else(|| TokenError::UnknownKid(kid.clone()))?;
        // Pinned: a token naming any other algorithm fails, whatever its header says.
        let mut validation = Validation::new(self.keys.algorithm());
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS as u64;
        Ok(decode::<Claims>(token, key, &validation)?.claims)
    }
}
