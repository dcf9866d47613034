//! Login sessions and their refresh tokens.
//!
//! A login starts a session (a family of refresh tokens, its id the access tokens' `sid`).
//! Refreshing spends the presented token and issues its successor, with a fresh expiry (a
//! sliding window: a session in use stays alive, an idle one expires). Tokens are 256
//! random bits, shown once, stored only as their SHA-256. Presenting a spent token means
//! two parties hold the family (one of them stole it): the whole session ends, and every
//! access token of it is refused on every instance (the revocation list, by `sid`).
//! Logout, deactivation, suspension and a password change end sessions the same way.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::tenancy::TenantStatus;

/// What distinguishes Chronicle's refresh tokens from anything else a client holds.
const PREFIX: &str = "crt_";

/// A refresh token as the client gets it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub session: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// The session a presented refresh token continued.
#[derive(Debug, Clone)]
pub struct Continued {
    pub user: Uuid,
    /// The user's tenant as the database says (`None`: a platform admin).
    pub tenant: Option<String>,
    pub next: Issued,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is unknown, expired or ended")]
    Invalid,
    #[error("the refresh token was already used: its session has ended")]
    Reused,
    #[error("the account of the refresh token no longer exists")]
    NoAccount,
    /// The user's tenant, as the database says, cannot be used (suspended, still being set
    /// up, or none: taken back); nothing was spent.
    #[error("the tenant of the refresh token is not active ({status:?})")]
    TenantNotActive { status: Option<TenantStatus> },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a session ended, as recorded.
#[derive(Debug, Clone, Copy)]
pub enum EndReason {
    Logout,
    Reuse,
    Deactivated,
    PasswordChanged,
    Suspended,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Reuse => "refresh token reused",
            Self::Deactivated => "user deactivated",
            Self::PasswordChanged => "password changed",
            Self::Suspended => "tenant suspended",
        }
    }
}

fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0_u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    (token, hash)
}

/// Sessions, with the window a refresh token lives unused and the access tokens' lifetime
/// (how long an ended session must stay on the revocation list).
#[derive(Debug, Clone, Copy)]
pub struct Sessions {
    pub window: Duration,
    pub access_lifetime: Duration,
}

impl Sessions {
    /// Starts a session for a user who just logged in, on `conn` (a tenant user's login
    /// holds their row there, so a deactivation or password change cannot slip between the
    /// check and this session: see `login`).
    pub async fn start(
        &self,
        conn: &mut sqlx::PgConnection,
        user: Uuid,
    ) -> Result<Issued, sqlx::Error> {
        let session = Uuid::now_v7();
        let (token, hash) = new_token();
        let expires_at = Utc::now() + self.window;
        sqlx::query!(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at)
             VALUES ($1, $2, $3, $4)",
            hash,
            session,
            user,
            expires_at
        )
        .execute(conn)
        .await?;
        Ok(Issued {
            token,
            session,
            expires_at,
        })
    }

    /// Spends `presented` and issues its successor in the same session.
    pub async fn refresh(&self, pool: &PgPool, presented: &str) -> Result<Continued, RefreshError> {
        if !presented.starts_with(PREFIX) || presented.len() > 128 {
            return Err(RefreshError::Invalid);
        }
        let hash = Sha256::digest(presented.as_bytes()).to_vec();
        let mut tx = pool.begin().await?;
        let row = sqlx::query!(
            "SELECT family_id, user_id, expires_at, spent_at FROM refresh_tokens
             WHERE token_hash = $1 FOR UPDATE",
            hash
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(RefreshError::Invalid);
        };
        if row.spent_at.is_some() {
            // Someone refreshed with this token before: the thief or the owner holds the
            // successor. End the session for both.
            tx.commit().await?;
            self.end(pool, row.family_id, EndReason::Reuse).await?;
            return Err(RefreshError::Reused);
        }
        if row.expires_at <= Utc::now() {
            return Err(RefreshError::Invalid);
        }
        // An ended session stays ended, whatever token of it is left.
        let ended = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE family_id = $1) AS "ended!""#,
            row.family_id
        )
        .fetch_one(&mut *tx)
        .await?;
        if ended {
            return Err(RefreshError::Invalid);
        }
        // Whose session it is, from the database and before the token is spent: a user
        // made on another instance a moment ago is not in this instance's directory yet,
        // and must not lose the session for it. No account: nothing is spent.
        let tenant: Option<String> =
            sqlx::query_scalar("SELECT tenant_id FROM user_directory(NULL, $1)")
                .bind(row.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let tenant = match tenant {
            Some(tenant) => {
                // Its status from the database too, before anything is spent: a tenant
                // set up on another instance a moment ago is not in this one's registry
                // yet, and its users must not lose their sessions for it.
                let status: Option<String> =
                    sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                        .bind(&tenant)
                        .fetch_optional(&mut *tx)
                        .await?;
                match status.as_deref().map(TenantStatus::parse) {
                    Some(TenantStatus::Active) => Some(tenant),
                    status => return Err(RefreshError::TenantNotActive { status }),
                }
            }
            None => {
                let platform_admin: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM platform_admins WHERE user_id = $1)",
                )
                .bind(row.user_id)
                .fetch_one(&mut *tx)
                .await?;
                if !platform_admin {
                    return Err(RefreshError::NoAccount);
                }
                None
            }
        };
        sqlx::query!(
            "UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = $1",
            hash
        )
        .execute(&mut *tx)
        .await?;
        let (token, next_hash) = new_token();
        let expires_at = Utc::now() + self.window;
        sqlx::query!(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at)
             VALUES ($1, $2, $3, $4)",
            next_hash,
            row.family_id,
            row.user_id,
            expires_at
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Continued {
            user: row.user_id,
            tenant,
            next: Issued {
                token,
                session: row.family_id,
                expires_at,
            },
        })
    }

    /// Ends one session: its refresh tokens are gone, and its access tokens are refused
    /// until the last of them would have expired anyway.
    pub async fn end(
        &self,
        pool: &PgPool,
        session: Uuid,
        reason: EndReason,
    ) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        // Lock first, delete in a second statement: a refresh in flight holds its token's
        // row and inserts the successor; the lock waits for it, and the DELETE's fresh
        // snapshot then sees the successor too (one DELETE would miss it).
        sqlx::query!(
            "SELECT token_hash FROM refresh_tokens WHERE family_id = $1 FOR UPDATE",
            session
        )
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query!("DELETE FROM refresh_tokens WHERE family_id = $1", session)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "INSERT INTO revoked_sessions (family_id, expires_at, reason) VALUES ($1, $2, $3)
             ON CONFLICT (family_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
            session,
            Utc::now() + self.access_lifetime,
            reason.as_str()
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every session of these users, inside the caller's transaction (so that it
    /// commits with the change that ends them: a deactivation, a password change, a
    /// tenant's suspension).
    pub async fn end_all_of_users(
        &self,
        conn: &mut sqlx::PgConnection,
        users: &[Uuid],
        reason: EndReason,
    ) -> Result<(), sqlx::Error> {
        // As in `end`: wait for refreshes in flight, then see their successors.
        sqlx::query!(
            "SELECT token_hash FROM refresh_tokens WHERE user_id = ANY($1) FOR UPDATE",
            users
        )
        .fetch_all(&mut *conn)
        .await?;
        sqlx::query!(
            "INSERT INTO revoked_sessions (family_id, expires_at, reason)
             SELECT DISTINCT family_id, $2::timestamptz, $3 FROM refresh_tokens WHERE user_id = ANY($1)
             ON CONFLICT (family_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
            users,
            Utc::now() + self.access_lifetime,
            reason.as_str()
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!("DELETE FROM refresh_tokens WHERE user_id = ANY($1)", users)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Forgets expired refresh tokens, and the revocations of sessions and of single
    /// tokens that outlived what they revoke (no access token of them is valid any more):
    /// the revocation lists every instance reloads on each notice stay small.
    pub async fn purge(&self, pool: &PgPool) -> Result<u64, sqlx::Error> {
        let tokens = sqlx::query!("DELETE FROM refresh_tokens WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected();
        let sessions = sqlx::query!("DELETE FROM revoked_sessions WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected();
        // Not a macro: its offline data would need the new migration's grant to prepare.
        let revoked = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected();
        Ok(tokens + sessions + revoked)
    }
}
