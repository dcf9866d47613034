//! The tenant registry's endpoints, for platform admins. Each change appends the tenant's
//! event and updates the `tenants` row in one transaction; the row's trigger notifies
//! every instance.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use event_store::{
    EventMetadata, ExpectedVersion, NewEvent, StreamId, TenantId, TenantTransaction,
};
use schemas::{
    DomainEvent, TenantEvent, TenantName, TenantReactivated, TenantRegistered, TenantSuspended,
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::registry::{Tenant, TenantStatus};
use crate::app::AppState;
use crate::auth::{Caller, password};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, FieldError, Problem};
use crate::users::{self, UserInput};

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
    pub id: String,
    pub name: String,
    /// The tenant's first admin.
    pub admin: AdminInput,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminInput {
    pub username: String,
    pub password: String,
    pub display_name: String,
}

/// Registers a tenant and its first admin.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", request_body = TenantInput,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 201, body = Tenant, headers(("Location" = String))), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem),
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
        key,
        &Method::POST,
        "/v1/tenants",
        &body.raw,
    );
    let password_hash = password::hash(admin.password.clone()).await?;

    let mut tx = app.store.begin(&id).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let inserted = sqlx::query!(
        r#"INSERT INTO tenants (id, name, status) VALUES ($1, $2, 'active')
           ON CONFLICT (id) DO NOTHING
           RETURNING created_at"#,
        id.as_str(),
        name.as_str()
    )
    .fetch_optional(tx.connection())
    .await?;
    let Some(created) = inserted else {
        return Err(ApiError::Conflict(format!(
            "a tenant `{id}` already exists"
        )));
    };
    let event = TenantEvent::from(TenantRegistered { name: name.clone() });
    append(
        &mut tx,
        &id,
        ExpectedVersion::NoStream,
        &event,
        caller.event_metadata(),
    )
    .await?;
    users::register(&mut tx, &admin, &password_hash, caller.event_metadata()).await?;

    let tenant = Tenant {
        id: id.to_string(),
        name: name.to_string(),
        status: TenantStatus::Active,
        created_at: created.created_at,
    };
    let response = StoredResponse::json(
        StatusCode::CREATED,
        vec![("location".to_owned(), format!("/v1/tenants/{id}"))],
        &tenant,
    );
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    // This instance knows at once; the others on the notification.
    app.tenants
        .reload_one(app.store.pool(), id.as_str())
        .await?;
    tracing::info!(tenant_id = %id, "tenant registered");
    Ok(response.into_response())
}

/// Every tenant.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, body = Vec<Tenant>), (status = 403, body = Problem)),
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
    responses((status = 200, body = Tenant), (status = 403, body = Problem), (status = 404, body = Problem)),
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
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Tenant), (status = 403, body = Problem), (status = 404, body = Problem)),
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
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Tenant), (status = 403, body = Problem), (status = 404, body = Problem)),
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
    let idempotency = Idempotency::new(Scope::Platform, key, &Method::POST, &path, b"");

    let mut tx = app.store.begin(&id).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let row = sqlx::query!(
        "SELECT name, status, created_at FROM tenants WHERE id = $1 FOR UPDATE",
        id.as_str()
    )
    .fetch_optional(tx.connection())
    .await?
    .ok_or(ApiError::NotFound)?;
    if row.status != wanted.as_str() {
        sqlx::query!(
            "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1",
            id.as_str(),
            wanted.as_str()
        )
        .execute(tx.connection())
        .await?;
        let event = match wanted {
            TenantStatus::Suspended => TenantEvent::from(TenantSuspended { reason: None }),
            TenantStatus::Active => TenantEvent::from(TenantReactivated {}),
        };
        append(
            &mut tx,
            &id,
            ExpectedVersion::Any,
            &event,
            caller.event_metadata(),
        )
        .await?;
    }
    let tenant = Tenant {
        id: id.to_string(),
        name: row.name,
        status: wanted,
        created_at: row.created_at,
    };
    let response = StoredResponse::json(StatusCode::OK, Vec::new(), &tenant);
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    app.tenants
        .reload_one(app.store.pool(), id.as_str())
        .await?;
    tracing::info!(tenant_id = %id, status = wanted.as_str(), "tenant status set");
    Ok(response.into_response())
}

async fn append(
    tx: &mut TenantTransaction<'_>,
    tenant: &TenantId,
    expected: ExpectedVersion,
    event: &TenantEvent,
    metadata: EventMetadata,
) -> Result<(), ApiError> {
    let stream =
        StreamId::for_aggregate(TenantEvent::AGGREGATE, tenant).map_err(ApiError::internal)?;
    tx.append_to_stream(&stream, expected, vec![NewEvent::new(event, metadata)])
        .await?;
    Ok(())
}
