//! Taking back set-ups nobody finished: the compensation of the saga in `super`.

use axum::http::StatusCode;
use event_store::{StreamId, TenantId, TenantTransaction};
use schemas::TenantEvent;

use crate::auth::Caller;
use crate::commands::{self, Command, Landed};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::tenancy::aggregate::{TenantCommand, TenantState, decide, tenant_stream};

/// Takes back tenants left pending longer than the configured timeout; how many.
pub async fn abandon_stale(app: &AppState) -> Result<usize, ApiError> {
    let timeout = i64::try_from(app.config.signup_pending_timeout_secs).unwrap_or(i64::MAX);
    let stale = sqlx::query_scalar!(
        "SELECT id FROM tenants WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $1)",
        timeout as f64
    )
    .fetch_all(app.store.pool())
    .await?;
    let system = Caller::system_alone();
    let mut abandoned = 0;
    for id in stale {
        let Ok(id) = TenantId::parse(id) else {
            continue;
        };
        let command = AbandonTenant { id: id.clone() };
        match commands::execute(
            app,
            &system,
            &id,
            Idempotency::none(Scope::Platform),
            command,
        )
        .await
        {
            Ok(_) => {
                abandoned += 1;
                app.tenants
                    .reload_one(app.store.pool(), id.as_str())
                    .await?;
                tracing::warn!(tenant_id = %id, "an unfinished sign-up was taken back");
            }
            Err(error) => {
                tracing::warn!(tenant_id = %id, %error, "taking back an unfinished sign-up failed")
            }
        }
    }
    Ok(abandoned)
}

/// The compensation of a set-up nobody finished.
#[derive(Debug)]
struct AbandonTenant {
    id: TenantId,
}

impl Command for AbandonTenant {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.id)
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        let command = TenantCommand::Abandon {
            reason: "set-up not finished in time".to_owned(),
        };
        decide(state, command).map_err(|error| super::tenant_error(&self.id, error))
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        if landed.events.is_empty() {
            return Ok(());
        }
        sqlx::query!("DELETE FROM users WHERE tenant_id = $1", self.id.as_str())
            .execute(tx.connection())
            .await?;
        sqlx::query!(
            "DELETE FROM tenants WHERE id = $1 AND status = 'pending'",
            self.id.as_str()
        )
        .execute(tx.connection())
        .await?;
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        Ok(StoredResponse::json(
            StatusCode::OK,
            Vec::new(),
            &serde_json::json!({}),
        ))
    }
}
