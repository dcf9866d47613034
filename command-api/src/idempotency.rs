//! `Idempotency-Key`: the same key with the same request returns the first response and
//! appends nothing; the same key with another request is a 422. Records last 24 hours,
//! per tenant and user (platform admins' writes have a table of their own): one user's key
//! never replays, or collides with, another user's request.
//!
//! "The same request" is decided by a fingerprint of the method, path and body: an HMAC
//! under a server secret ([`FingerprintKey`]), because a body may hold a password (a new
//! user's), and a plain digest in the table would let anyone who can read the database
//! test guesses against it at hash speed.
//!
//! The check, the command and the record share one transaction, and requests with the
//! same key serialize on a transaction-scoped advisory lock: a retry that arrives while
//! the first attempt is still running waits for it, then replays its response. Only
//! successful responses are recorded; after a failure the key can be used again.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use event_store::TenantId;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::extract::IdempotencyKey;
use crate::problem::ApiError;

/// Whose keys these are.
#[derive(Debug, Clone)]
pub enum Scope {
    Tenant(TenantId),
    Platform,
}

/// A response as recorded, and as replayed.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub replayed: bool,
}

impl StoredResponse {
    pub fn json(status: StatusCode, headers: Vec<(String, String)>, body: &impl Serialize) -> Self {
        let body = serde_json::to_vec(body).expect("response bodies serialize");
        Self {
            status,
            headers,
            body,
            replayed: false,
        }
    }
}

impl IntoResponse for StoredResponse {
    fn into_response(self) -> Response {
        let empty = self.body.is_empty();
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if !empty {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
        }
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                headers.insert(name, value);
            }
        }
        if self.replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }
}

/// The secret that keys request fingerprints; every instance must hold the same.
#[derive(Clone)]
pub struct FingerprintKey(Hmac<Sha256>);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

impl FingerprintKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"))
    }

    /// A key derived from other secret material (the JWT signing key), under a label of
    /// its own so that the derived key says nothing about the material.
    pub fn derived_from(material: &[u8]) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"chronicle/idempotency-fingerprint/v1\0");
        digest.update(material);
        Self::new(&digest.finalize())
    }

    /// The fingerprint of a request: method, path and body.
    pub fn of(&self, method: &Method, path: &str, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(method.as_str().as_bytes());
        mac.update(b" ");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// One write's idempotency: nothing to do without a key.
#[derive(Debug)]
pub struct Idempotency {
    scope: Scope,
    user: Uuid,
    key: Option<String>,
    fingerprint: String,
}

impl Idempotency {
    /// `fingerprint` ([`FingerprintKey::of`]) identifies "the same request"; `user` is the
    /// caller, whose keys these are.
    pub fn new(scope: Scope, user: Uuid, key: IdempotencyKey, fingerprint: String) -> Self {
        Self {
            scope,
            user,
            key: key.0,
            fingerprint,
        }
    }

    /// No key: nothing to check or record (a step of a larger write that records its own).
    pub fn none(scope: Scope) -> Self {
        Self {
            scope,
            user: Uuid::nil(),
            key: None,
            fingerprint: String::new(),
        }
    }

    /// [`Idempotency::replay`] in a transaction of its own, for a write made of several
    /// transactions (a tenant's set-up) that must first know whether it already finished.
    pub async fn replay_now(
        &self,
        pool: &sqlx::PgPool,
    ) -> Result<Option<StoredResponse>, ApiError> {
        if self.key.is_none() {
            return Ok(None);
        }
        let mut tx = pool.begin().await?;
        let replay = self.replay(&mut tx).await?;
        tx.commit().await?;
        Ok(replay)
    }

    /// Whose keys these are.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether the request carries a key (otherwise there is nothing to check or record).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Call first in the write's transaction: the recorded response of an earlier request
    /// with this key, if any (422 if that request was another one).
    pub async fn replay(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Option<StoredResponse>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let lock_key = match &self.scope {
            Scope::Tenant(tenant) => format!("idempotency:{tenant}:{}:{key}", self.user),
            Scope::Platform => format!("idempotency:~platform:{}:{key}", self.user),
        };
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            lock_key
        )
        .execute(&mut *conn)
        .await?;

        let stored = match &self.scope {
            Scope::Tenant(tenant) => sqlx::query_as!(
                Recorded,
                r#"SELECT request_fingerprint, response_status, response_headers, response_body
                   FROM idempotency_keys
                   WHERE tenant_id = $1 AND user_id = $2 AND idempotency_key = $3
                     AND created_at > now() - interval '24 hours'"#,
                tenant.as_str(),
                self.user,
                key
            )
            .fetch_optional(&mut *conn)
            .await?,
            Scope::Platform => sqlx::query_as!(
                Recorded,
                r#"SELECT request_fingerprint, response_status, response_headers, response_body
                   FROM platform_idempotency_keys
                   WHERE user_id = $1 AND idempotency_key = $2 AND created_at > now() - interval '24 hours'"#,
                self.user,
                key
            )
            .fetch_optional(&mut *conn)
            .await?,
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        if stored.request_fingerprint != self.fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        let headers: Vec<(String, String)> =
            serde_json::from_value(stored.response_headers).map_err(ApiError::internal)?;
        Ok(Some(StoredResponse {
            status: StatusCode::from_u16(u16::try_from(stored.response_status).unwrap_or(200))
                .map_err(ApiError::internal)?,
            headers,
            body: stored.response_body,
            replayed: true,
        }))
    }

    /// Call last in the write's transaction, with the response about to be sent.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        response: &StoredResponse,
    ) -> Result<(), ApiError> {
        let Some(key) = &self.key else { return Ok(()) };
        let status = i16::try_from(response.status.as_u16()).map_err(ApiError::internal)?;
        let headers = serde_json::to_value(&response.headers).map_err(ApiError::internal)?;
        // A row that is still there must have expired (a live one was replayed), so an
        // existing row is overwritten.
        match &self.scope {
            Scope::Tenant(tenant) => sqlx::query!(
                r#"INSERT INTO idempotency_keys
                       (tenant_id, user_id, idempotency_key, request_fingerprint, response_status, response_headers, response_body)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (tenant_id, user_id, idempotency_key) DO UPDATE SET
                       request_fingerprint = EXCLUDED.request_fingerprint,
                       response_status = EXCLUDED.response_status,
                       response_headers = EXCLUDED.response_headers,
                       response_body = EXCLUDED.response_body,
                       created_at = now()"#,
                tenant.as_str(),
                self.user,
                key,
                self.fingerprint,
                status,
                headers,
                response.body
            )
            .execute(&mut *conn)
            .await?,
            Scope::Platform => sqlx::query!(
                r#"INSERT INTO platform_idempotency_keys
                       (user_id, idempotency_key, request_fingerprint, response_status, response_headers, response_body)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (user_id, idempotency_key) DO UPDATE SET
                       request_fingerprint = EXCLUDED.request_fingerprint,
                       response_status = EXCLUDED.response_status,
                       response_headers = EXCLUDED.response_headers,
                       response_body = EXCLUDED.response_body,
                       created_at = now()"#,
                self.user,
                key,
                self.fingerprint,
                status,
                headers,
                response.body
            )
            .execute(&mut *conn)
            .await?,
        };
        Ok(())
    }
}

struct Recorded {
    request_fingerprint: String,
    response_status: i16,
    response_headers: serde_json::Value,
    response_body: Vec<u8>,
}
