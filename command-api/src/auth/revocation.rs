//! Revoked token ids, held in memory so checking one costs no database call. Every
//! instance reloads the list when a revocation is notified (see `crate::sync`).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct RevocationList {
    /// Revoked `jti` -> when the token expires anyway (then it can be forgotten).
    revoked: RwLock<HashMap<Uuid, DateTime<Utc>>>,
    /// Ended login sessions (refresh token families): every access token of one is refused.
    sessions: RwLock<HashSet<Uuid>>,
}

impl RevocationList {
    pub fn is_revoked(&self, jti: Uuid) -> bool {
        self.revoked
            .read()
            .expect("revocation lock")
            .contains_key(&jti)
    }

    pub fn is_session_revoked(&self, session: Uuid) -> bool {
        self.sessions
            .read()
            .expect("revocation lock")
            .contains(&session)
    }

    /// Marks a session ended on this instance at once (the others learn by notification).
    pub fn session_ended(&self, session: Uuid) {
        self.sessions
            .write()
            .expect("revocation lock")
            .insert(session);
    }

    /// Reloads every revocation of a token, or session, that has not expired yet.
    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let sessions =
            sqlx::query_scalar!("SELECT family_id FROM revoked_sessions WHERE expires_at > now()")
                .fetch_all(pool)
                .await?;
        *self.sessions.write().expect("revocation lock") = sessions.into_iter().collect();
        let rows =
            sqlx::query!("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > now()")
                .fetch_all(pool)
                .await?;
        let revoked = rows
            .into_iter()
            .map(|row| (row.jti, row.expires_at))
            .collect();
        *self.revoked.write().expect("revocation lock") = revoked;
        Ok(())
    }

    /// Records a revocation; every instance learns of it through the notification.
    pub async fn revoke(
        &self,
        pool: &PgPool,
        jti: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            jti,
            expires_at
        )
        .execute(pool)
        .await?;
        self.revoked
            .write()
            .expect("revocation lock")
            .insert(jti, expires_at);
        Ok(())
    }
}
