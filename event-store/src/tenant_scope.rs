//! Tenant-scoped transactions.
//!
//! Row-level security on every tenant table compares `tenant_id` with the setting
//! `app.tenant_id`. It is set with `set_config(.., true)`, i.e. transaction-local: it
//! ends with the transaction, so a pooled connection never carries one tenant's context
//! into the next request, and a query outside a scoped transaction sees nothing.

use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};

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
        // BEGIN and the setting in one round trip (a simple-query batch): every write pays
        // for this, so it is worth one message instead of two. The tenant id is spliced,
        // which is safe only because a `TenantId` is a lowercase slug by construction;
        // the assertion keeps it that way.
        let id = tenant.as_str();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "tenant ids are slugs"
        );
        let tx = pool
            .begin_with(AssertSqlSafe(format!(
                "BEGIN; SELECT set_config('app.tenant_id', '{id}', true)"
            )))
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
