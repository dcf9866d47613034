//! Each tenant's own roles with their permissions; the built-in roles answer from code.
//! Loaded whole at start and after every reconnection of the change feed, then one tenant
//! at a time as the `roles` table notifies changes.

use std::collections::HashMap;
use std::sync::RwLock;

use schemas::{Permission, Permissions, RoleName};
use sqlx::PgPool;

#[derive(Debug, Default)]
pub struct RoleRegistry {
    /// Tenant -> role name -> permissions.
    tenants: RwLock<HashMap<String, HashMap<String, Permissions>>>,
}

/// Stored permission names, read leniently: a name this build does not know grants
/// nothing (a newer build may have written it).
pub(crate) fn permissions_of(names: &[String]) -> Permissions {
    Permissions::of(names.iter().filter_map(|name| Permission::parse(name)))
}

impl RoleRegistry {
    /// What `role` may do in `tenant`; `None` for a role the tenant does not have.
    pub fn permissions(&self, tenant: &str, role: &RoleName) -> Option<Permissions> {
        if let Some(builtin) = role.builtin_permissions() {
            return Some(builtin);
        }
        self.tenants
            .read()
            .expect("roles lock")
            .get(tenant)?
            .get(role.as_str())
            .copied()
    }

    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT tenant_id AS "tenant_id!", name AS "name!", permissions AS "permissions!"
               FROM role_directory(NULL)"#
        )
        .fetch_all(pool)
        .await?;
        let mut tenants: HashMap<String, HashMap<String, Permissions>> = HashMap::new();
        for row in rows {
            tenants
                .entry(row.tenant_id)
                .or_default()
                .insert(row.name, permissions_of(&row.permissions));
        }
        *self.tenants.write().expect("roles lock") = tenants;
        Ok(())
    }

    /// Reloads one tenant's roles (a notification's payload is the tenant id).
    pub async fn reload_tenant(&self, pool: &PgPool, tenant: &str) -> Result<(), sqlx::Error> {
        let rows = sqlx::query!(
            r#"SELECT name AS "name!", permissions AS "permissions!" FROM role_directory($1)"#,
            tenant
        )
        .fetch_all(pool)
        .await?;
        let roles = rows
            .into_iter()
            .map(|row| (row.name, permissions_of(&row.permissions)))
            .collect();
        self.tenants
            .write()
            .expect("roles lock")
            .insert(tenant.to_owned(), roles);
        Ok(())
    }
}
