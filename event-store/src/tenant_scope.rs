//! Tenant-scoped transactions.
//!
//! Row-level security on every tenant table compares `tenant_id` with the setting
//! `app.tenant_id`. It is set with `set_config(.., true)`, i.e. transaction-local: it
//! ends with the transaction, so a pooled connection never carries one tenant's context
//! into the next request, and a query outside a scoped transaction sees nothing.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::error::EventStoreError;
use schemas::TenantId;

/// A database transaction in which only `tenant`'s rows exist.
#[derive(Debug)]
pub struct TenantTransaction<'c> {
    tx: Transaction<'c, Postgres>,
    tenant: TenantId,
}

impl TenantTransaction<'static> {
    pub async fn begin(pool: &PgPool, tenant: &TenantId) -> Result<Self, EventStoreError> {
        let mut tx = pool.begin().await?;
        sqlx::query!(
            "SELECT set_config('app.tenant_id', $1, true)",
            tenant.as_str()
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(Self {
            tx,
            tenant: tenant.clone(),
        })
    }
}

impl TenantTransaction<'_> {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The connection, for queries of other crates that belong in the same transaction.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), EventStoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), EventStoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}
