//! The tenant registry's endpoints, for platform admins. Each change is a command of the one
//! pipeline in the tenant's own scope: the tenant's event and its `tenants` row in one
//! transaction; the row's trigger notifies every instance.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use event_store::{ExpectedVersion, NewEvent, StreamId, TenantId, TenantTransaction};
use schemas::{
    DomainEvent, TenantEvent, TenantName, TenantReactivated, TenantRegistered, TenantSuspended,
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::aggregate::TenantState;
use super::registry::{Tenant, TenantStatus};
use crate::auth::{Caller, password};
use crate::commands::{self, Command, Landed};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::openapi::fields;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;
use crate::users::UserInput;
use crate::users::handlers::RegisterUser;

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
    let mut errors = Vec::new();
    let id = TenantId::parse(input.id)
        .map_err(|e| errors.push(FieldError::new("id", e)))
        .ok();
    let name = TenantName::parse(&input.name)
        .map_err(|e| errors.push(FieldError::new("name", e)))
        .ok();
    let admin = UserInput {
        username: input.admin.username,
        password: input.admin.password,
        display_name: input.admin.display_name,
        role: "admin".to_owned(),
    }
    .validate("admin.")
    .map_err(|e| errors.extend(e))
    .ok();
    let (Some(id), Some(name), Some(admin)) = (id, name, admin) else {
        return Err(ApiError::Validation(errors));
    };
    let idempotency = Idempotency::new(
        Scope::Platform,
        caller.user_id,
        key,
        app.fingerprints.of(&Method::POST, "/v1/tenants", &body.raw),
    );
    let password_hash = password::hash(admin.password.clone()).await?;
    let command = RegisterTenant {
        id: id.clone(),
        name,
        admin: RegisterUser::new(admin, password_hash),
        created_at: None,
    };
    let response = commands::execute(&app, &caller, &id, idempotency, command).await?;
    // This instance knows at once; the others on the notification.
    app.tenants
        .reload_one(app.store.pool(), id.as_str())
        .await?;
    tracing::info!(tenant_id = %id, "tenant registered");
    Ok(response)
}

/// A tenant's registration: its event and registry row, and its first admin.
#[derive(Debug)]
struct RegisterTenant {
    id: TenantId,
    name: TenantName,
    admin: RegisterUser,
    /// The registry row's, once written.
    created_at: Option<DateTime<Utc>>,
}

fn tenant_stream(id: &TenantId) -> StreamId {
    StreamId::for_aggregate(TenantEvent::AGGREGATE, id).expect("tenant ids make valid stream ids")
}

impl Command for RegisterTenant {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.id)
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        if state.is_some() {
            return Err(already_exists(&self.id));
        }
        Ok(vec![
            TenantRegistered {
                name: self.name.clone(),
            }
            .into(),
        ])
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        let inserted = sqlx::query!(
            r#"INSERT INTO tenants (id, name, status) VALUES ($1, $2, 'active')
               ON CONFLICT (id) DO NOTHING
               RETURNING created_at"#,
            self.id.as_str(),
            self.name.as_str()
        )
        .fetch_optional(tx.connection())
        .await?;
        let created = inserted.ok_or_else(|| already_exists(&self.id))?;
        self.created_at = Some(created.created_at);
        self.admin.insert_row(tx).await?;
        let (stream, event) = self.admin.new_event();
        tx.append_to_stream(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(&event, landed.caller.event_metadata())],
        )
        .await?;
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        let tenant = Tenant {
            id: self.id.to_string(),
            name: self.name.to_string(),
            status: TenantStatus::Active,
            created_at: self.created_at.unwrap_or_else(Utc::now),
        };
        Ok(StoredResponse::json(
            StatusCode::CREATED,
            vec![("location".to_owned(), format!("/v1/tenants/{}", self.id))],
            &tenant,
        ))
    }
}

fn already_exists(id: &TenantId) -> ApiError {
    ApiError::Conflict(format!("a tenant `{id}` already exists"))
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
}

impl Command for ChangeStatus {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.id)
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        let tenant = state.ok_or(ApiError::NotFound)?;
        Ok(match (tenant.status, self.wanted) {
            (current, wanted) if current == wanted => Vec::new(),
            (_, TenantStatus::Suspended) => vec![TenantSuspended { reason: None }.into()],
            (_, TenantStatus::Active) => vec![TenantReactivated {}.into()],
        })
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
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
        let tenant = Tenant {
            id: self.id.to_string(),
            name: state.name.to_string(),
            status: state.status,
            created_at: self.created_at.unwrap_or_else(Utc::now),
        };
        Ok(StoredResponse::json(StatusCode::OK, Vec::new(), &tenant))
    }
}
