//! Every tenant user's access, by user id: role, active, and the moment before which
//! their tokens no longer count. Loaded whole at start and after every reconnection of the
//! change feed, then one user at a time as the `users` table notifies changes.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use schemas::RoleName;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    pub tenant: String,
    pub role: RoleName,
    pub active: bool,
    /// Tokens issued before this are refused (a password change, say).
    pub sessions_valid_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct UserDirectory {
    users: RwLock<HashMap<Uuid, UserAccess>>,
}

struct Row {
    tenant_id: Option<String>,
    user_id: Option<Uuid>,
    role: Option<String>,
    active: Option<bool>,
    sessions_valid_after: Option<DateTime<Utc>>,
}

impl Row {
    fn into_entry(self) -> Option<(Uuid, UserAccess)> {
        Some((
            self.user_id?,
            UserAccess {
                tenant: self.tenant_id?,
                role: RoleName::from(self.role?),
                active: self.active?,
                sessions_valid_after: self.sessions_valid_after,
            },
        ))
    }
}

impl UserDirectory {
    pub fn get(&self, user: Uuid) -> Option<UserAccess> {
        self.users
            .read()
            .expect("directory lock")
            .get(&user)
            .cloned()
    }

    /// Active users of `tenant` with `role`, from memory (the last-admin rule reads the
    /// database itself, inside its transaction; this is for reports).
    pub fn count_with_role(&self, tenant: &str, role: &str) -> usize {
        self.users
            .read()
            .expect("directory lock")
            .values()
            .filter(|u| u.tenant == tenant && u.role.as_str() == role && u.active)
            .count()
    }

    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows = sqlx::query_as!(
            Row,
            "SELECT tenant_id, user_id, role, active, sessions_valid_after FROM user_directory(NULL, NULL)"
        )
        .fetch_all(pool)
        .await?;
        let users = rows.into_iter().filter_map(Row::into_entry).collect();
        *self.users.write().expect("directory lock") = users;
        Ok(())
    }

    /// Reloads one user, named by a notification's payload `<tenant>/<user id>`.
    pub async fn reload_one(&self, pool: &PgPool, payload: &str) -> Result<(), sqlx::Error> {
        let Some((tenant, user)) = payload.split_once('/') else {
            return self.reload(pool).await;
        };
        let Ok(user) = Uuid::parse_str(user) else {
            return self.reload(pool).await;
        };
        let row = sqlx::query_as!(
            Row,
            "SELECT tenant_id, user_id, role, active, sessions_valid_after FROM user_directory($1, $2)",
            tenant,
            user
        )
        .fetch_optional(pool)
        .await?;
        let mut users = self.users.write().expect("directory lock");
        match row.and_then(Row::into_entry) {
            Some((id, access)) => users.insert(id, access),
            None => users.remove(&user),
        };
        Ok(())
    }
}
