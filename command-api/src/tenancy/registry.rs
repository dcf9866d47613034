//! The tenant registry, in memory on every instance.
//!
//! A request learns whether its tenant exists and is active without a database call.
//! The `tenants` table changes only together with the tenant's events, and a trigger
//! notifies `chronicle_tenants` on every change; every instance reloads on that
//! notification (see `crate::sync`), so a suspension is refused everywhere within
//! moments of its commit.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Being set up (sign-up, registration): nobody can use it yet.
    Pending,
    Active,
    Suspended,
}

impl TenantStatus {
    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "active" => Self::Active,
            "pending" => Self::Pending,
            // Anything else refuses access: the safe reading of an unknown status.
            _ => Self::Suspended,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
}

impl Tenant {
    /// The tenant as its stream says, with its row's creation time.
    pub fn of(
        id: &event_store::TenantId,
        state: &super::aggregate::TenantState,
        created_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            id: id.to_string(),
            name: state.name.to_string(),
            status: state.status,
            created_at: created_at.unwrap_or_else(Utc::now),
        }
    }
}

#[derive(Debug, Default)]
pub struct TenantRegistry {
    tenants: RwLock<HashMap<String, Tenant>>,
}

impl TenantRegistry {
    pub fn get(&self, id: &str) -> Option<Tenant> {
        self.tenants.read().expect("registry lock").get(id).cloned()
    }

    /// Every tenant, by id.
    pub fn all(&self) -> Vec<Tenant> {
        let mut tenants: Vec<Tenant> = self
            .tenants
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        tenants
    }

    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let rows = sqlx::query!("SELECT id, name, status, created_at FROM tenants")
            .fetch_all(pool)
            .await?;
        let tenants = rows
            .into_iter()
            .map(|row| {
                let tenant = Tenant {
                    id: row.id,
                    name: row.name,
                    status: TenantStatus::parse(&row.status),
                    created_at: row.created_at,
                };
                (tenant.id.clone(), tenant)
            })
            .collect();
        *self.tenants.write().expect("registry lock") = tenants;
        Ok(())
    }

    pub async fn reload_one(&self, pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
        let row = sqlx::query!(
            "SELECT id, name, status, created_at FROM tenants WHERE id = $1",
            id
        )
        .fetch_optional(pool)
        .await?;
        let mut tenants = self.tenants.write().expect("registry lock");
        match row {
            Some(row) => {
                let tenant = Tenant {
                    id: row.id,
                    name: row.name,
                    status: TenantStatus::parse(&row.status),
                    created_at: row.created_at,
                };
                tenants.insert(tenant.id.clone(), tenant);
            }
            None => {
                tenants.remove(id);
            }
        }
        Ok(())
    }
}
