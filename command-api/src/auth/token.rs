//! JWTs: issued with the signing key, verified with the key its `kid` names, under one
//! pinned algorithm. `exp`, `nbf`, `iss`, `aud` and `sub` are required and checked
//! (`jsonwebtoken` checks `iss`/`aud` only when they are listed as required claims).

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Header, Validation, decode, decode_header, encode};
use schemas::Role;
use serde::{Deserialize, Serialize};
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
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// Unique per token, so one token can be revoked.
    pub jti: Uuid,
}

/// Who a token is issued to.
#[derive(Debug, Clone)]
pub struct Subject {
    pub user_id: Uuid,
    pub display_name: String,
    pub tenant: Option<String>,
    pub role: Role,
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
}

impl TokenService {
    pub fn new(keys: KeySet, issuer: String, audience: String, lifetime: Duration) -> Self {
        Self {
            keys,
            issuer,
            audience,
            lifetime,
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
            role: subject.role,
            iat: now,
            nbf: now,
            exp: now + i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::now_v7(),
        };
        let (kid, key) = self.keys.signing();
        let mut header = Header::new(self.keys.algorithm());
        header.kid = Some(kid.to_owned());
        Ok((encode(&header, &claims, key)?, claims))
    }

    /// Verifies signature, algorithm, expiry, not-before, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
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
        validation.leeway = 5;
        Ok(decode::<Claims>(token, key, &validation)?.claims)
    }
}
