//! The tenant registry's endpoints, for platform admins. Each change is a command of the one
//! pipeline in the tenant's own scope: the tenant's event and its `tenants` row in one
//! transaction; the row's trigger notifies every instance. Registration is the set-up of
//! `super::signup` (pending, aliases, active), shared with self-service sign-up.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use event_store::{StreamId, TenantId, TenantTransaction};
use schemas::TenantEvent;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::aggregate::{TenantCommand, TenantState, decide, tenant_stream};
use super::registry::{Tenant, TenantStatus};
use super::signup::{NewTenant, set_up, tenant_error};
use crate::auth::Caller;
use crate::auth::sessions::{EndReason, Sessions};
use crate::commands::{self, Command, Landed};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::openapi::fields;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_tenant, list_tenants))
        .routes(routes!(get_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(reactivate_tenant))
}

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantInput {
    /// A lowercase slug: `^[a-z][a-z0-9-]{1,62}$`.
    #[schema(schema_with = fields::tenant_id)]
    pub id: String,
    /// 1 to 200 characters.
    #[schema(schema_with = fields::tenant_name)]
    pub name: String,
    /// The tenant's first admin.
    pub admin: AdminInput,
}

/// A tenant's first admin: a user as `POST /v1/users` takes one, of the role `admin`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminInput {
    #[schema(schema_with = fields::username)]
    pub username: String,
    #[schema(schema_with = fields::password)]
    pub password: String,
    #[schema(schema_with = fields::display_name)]
    pub display_name: String,
}

/// Registers a tenant and its first admin.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = TenantInput,
    params(IdempotencyKey),
    responses(
        (status = 201, body = Tenant,
         headers(("Location" = String, description = "`/v1/tenants/{id}`"))),
        (status = 409, description = "A tenant with this id exists", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn register_tenant(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: ValidJson<TenantInput>,
) -> Result<Response, ApiError> {
    caller.require_platform_admin()?;
    let input = body.value;
    let tenant = NewTenant::validate(Some(input.id), &input.name, input.admin)?;
    let fingerprint = app.fingerprints.of(&Method::POST, "/v1/tenants", &body.raw);
    let idempotency = Idempotency::new(Scope::Platform, caller.user_id, key, fingerprint.clone());
    set_up(&app, &caller, idempotency, fingerprint, tenant).await
}

/// Every tenant.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = Vec<Tenant>)),
    security(("bearer" = []))
)]
pub async fn list_tenants(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<Tenant>>, ApiError> {
    caller.require_platform_admin()?;
    Ok(axum::Json(app.tenants.all()))
}

/// One tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn get_tenant(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Tenant>, ApiError> {
    caller.require_platform_admin()?;
    app.tenants
        .get(&id)
        .map(axum::Json)
        .ok_or(ApiError::NotFound)
}

/// Suspends a tenant: from the moment it commits, every instance refuses its tokens.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/suspend", tag = "tenants",
    params(("id" = String, Path), IdempotencyKey),
    responses(
        (status = 200, body = Tenant), (status = 404, body = Problem),
        (status = 409, description = "Another request changed the tenant at the same time", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn suspend_tenant(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change_status(app, caller, key, id, TenantStatus::Suspended).await
}

/// Reactivates a suspended tenant.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/reactivate", tag = "tenants",
    params(("id" = String, Path), IdempotencyKey),
    responses(
        (status = 200, body = Tenant), (status = 404, body = Problem),
        (status = 409, description = "Another request changed the tenant at the same time", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn reactivate_tenant(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    change_status(app, caller, key, id, TenantStatus::Active).await
}

async fn change_status(
    app: AppState,
    caller: Caller,
    key: IdempotencyKey,
    id: String,
    wanted: TenantStatus,
) -> Result<Response, ApiError> {
    caller.require_platform_admin()?;
    let id = TenantId::parse(id).map_err(|_| ApiError::NotFound)?;
    let action = if wanted == TenantStatus::Active {
        "reactivate"
    } else {
        "suspend"
    };
    let path = format!("/v1/tenants/{id}/{action}");
    let idempotency = Idempotency::new(
        Scope::Platform,
        caller.user_id,
        key,
        app.fingerprints.of(&Method::POST, &path, b""),
    );
    let command = ChangeStatus {
        id: id.clone(),
        wanted,
        created_at: None,
        sessions: app.sessions,
    };
    let response = commands::execute(&app, &caller, &id, idempotency, command).await?;
    app.tenants
        .reload_one(app.store.pool(), id.as_str())
        .await?;
    tracing::info!(tenant_id = %id, status = wanted.as_str(), "tenant status set");
    Ok(response)
}

/// Suspending or reactivating: an event only when the status changes.
#[derive(Debug)]
struct ChangeStatus {
    id: TenantId,
    wanted: TenantStatus,
    created_at: Option<DateTime<Utc>>,
    sessions: Sessions,
}

impl Command for ChangeStatus {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.id)
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        let command = match self.wanted {
            TenantStatus::Suspended => TenantCommand::Suspend,
            TenantStatus::Active => TenantCommand::Reactivate,
            TenantStatus::Pending => {
                return Err(ApiError::BadRequest(
                    "a tenant cannot be put back to pending".to_owned(),
                ));
            }
        };
        decide(state, command).map_err(|error| tenant_error(&self.id, error))
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        if self.wanted == TenantStatus::Suspended && !landed.events.is_empty() {
            // A suspension ends every session of the tenant's users: their refresh tokens
            // are refused for good, not only while the tenant is suspended.
            let users = sqlx::query_scalar!(
                "SELECT user_id FROM users WHERE tenant_id = $1",
                self.id.as_str()
            )
            .fetch_all(tx.connection())
            .await?;
            self.sessions
                .end_all_of_users(tx.connection(), &users, EndReason::Suspended)
                .await?;
        }
        let row = sqlx::query!(
            "UPDATE tenants SET status = $2,
                 updated_at = CASE WHEN status = $2 THEN updated_at ELSE now() END
             WHERE id = $1 RETURNING created_at",
            self.id.as_str(),
            self.wanted.as_str()
        )
        .fetch_optional(tx.connection())
        .await?
        .ok_or(ApiError::NotFound)?;
        self.created_at = Some(row.created_at);
        Ok(())
    }

    fn respond(&self, landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        let state = landed.state.ok_or(ApiError::NotFound)?;
        let tenant = Tenant::of(&self.id, state, self.created_at);
        Ok(StoredResponse::json(StatusCode::OK, Vec::new(), &tenant))
    }
}
