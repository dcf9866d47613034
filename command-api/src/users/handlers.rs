//! User administration (permission `users:manage`): create, change display name or role,
//! deactivate, reactivate, reset a password. Each handler parses its request and runs a
//! command of the one pipeline (`super::commands`): an event on the user's stream (so the
//! audit log shows who changed whose role, and when) and the `users` row beside it, in one
//! transaction. The rules (what one may grant, whom one may act on, the last admin) are the
//! aggregate's (`super::aggregate`).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use event_store::TenantId;
use schemas::Permission;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::UserChange;
use super::commands::{ChangeUser, RegisterUser};
use super::input::{PasswordReset, UserInput, UserPatch};
use super::reads::{User, parse_id};
use crate::auth::{Caller, password};
use crate::commands;
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope};
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(patch_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(reset_password))
}

/// Adds a user to the caller's tenant.
#[utoipa::path(
    post, path = "/v1/users", tag = "users", request_body = UserInput,
    params(IdempotencyKey),
    responses(
        (status = 201, body = User,
         headers(("Location" = String, description = "`/v1/users/{id}`"))),
        (status = 403, description = "No `users:manage`, or the role grants what the caller does not hold", body = Problem),
        (status = 409, description = "The username is taken in this tenant", body = Problem),
        (status = 429, description = "The tenant's write rate is exceeded", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create_user(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: ValidJson<UserInput>,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::UsersManage)?.clone();
    let user = body.value.validate("").map_err(ApiError::Validation)?;
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&Method::POST, "/v1/users", &body.raw),
    );
    // Hashing takes a while: before the transaction, not inside it.
    let password_hash = password::hash(user.password.clone()).await?;
    let command = RegisterUser::new(user, password_hash);
    let user = command.user_id();
    let response = commands::execute(&app, &caller, &tenant, idempotency, command).await?;
    see_own_change(&app, &tenant, user).await;
    Ok(response)
}

/// This instance sees a user change it made at once (the change feed tells the others
/// within a second): a new user logs in, a deactivated one is refused, on the next request.
/// Answering an idempotent replay reloads too: harmless.
async fn see_own_change(app: &AppState, tenant: &TenantId, user: Uuid) {
    if let Err(error) = app
        .users
        .reload_one(app.store.pool(), &format!("{tenant}/{user}"))
        .await
    {
        tracing::warn!(%error, %user, "reloading a changed user failed; the change feed will bring it");
    }
}

/// Changes a user's display name or role (only what is sent).
#[utoipa::path(
    patch, path = "/v1/users/{id}", tag = "users", request_body = UserPatch,
    params(("id" = Uuid, Path), IdempotencyKey),
    responses(
        (status = 200, body = User),
        (status = 403, description = "No `users:manage`, or the role (new or current) has permissions the caller does not hold", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "The last active admin cannot be demoted", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn patch_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    key: IdempotencyKey,
    body: ValidJson<UserPatch>,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::UsersManage)?.clone();
    let id = parse_id(&id)?;
    let changes = body.value.validate().map_err(ApiError::Validation)?;
    let path = format!("/v1/users/{id}");
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&Method::PATCH, &path, &body.raw),
    );
    let update = UserChange::Update {
        display_name: changes.display_name,
        role: changes.role,
    };
    let command = ChangeUser::new(&app, id, update);
    change(&app, &caller, &tenant, idempotency, command).await
}

/// Deactivates a user: no more logins, and every token and session of theirs is refused on
/// every instance within a second.
#[utoipa::path(
    post, path = "/v1/users/{id}/deactivate", tag = "users",
    params(("id" = Uuid, Path), IdempotencyKey),
    responses(
        (status = 200, body = User), (status = 404, body = Problem),
        (status = 409, description = "The last active admin cannot be deactivated", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn deactivate_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    key: IdempotencyKey,
) -> Result<Response, ApiError> {
    status_change(app, caller, id, key, "deactivate", UserChange::Deactivate).await
}

/// Lets a deactivated user log in again.
#[utoipa::path(
    post, path = "/v1/users/{id}/reactivate", tag = "users",
    params(("id" = Uuid, Path), IdempotencyKey),
    responses((status = 200, body = User), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn reactivate_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    key: IdempotencyKey,
) -> Result<Response, ApiError> {
    status_change(app, caller, id, key, "reactivate", UserChange::Reactivate).await
}

async fn status_change(
    app: AppState,
    caller: Caller,
    id: String,
    key: IdempotencyKey,
    action: &str,
    change_to: UserChange,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::UsersManage)?.clone();
    let id = parse_id(&id)?;
    let path = format!("/v1/users/{id}/{action}");
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&Method::POST, &path, b""),
    );
    let command = ChangeUser::new(&app, id, change_to);
    change(&app, &caller, &tenant, idempotency, command).await
}

/// Sets a user's password (an admin's reset); every session of theirs ends.
#[utoipa::path(
    post, path = "/v1/users/{id}/password", tag = "users", request_body = PasswordReset,
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Reset; the user's sessions have ended"),
        (status = 403, description = "No `users:manage`; the user's role has permissions the caller does not hold; or the user is the caller, who changes their own password with `POST /v1/auth/password` (the current one required)", body = Problem),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn reset_password(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: ValidJson<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.require(Permission::UsersManage)?.clone();
    let id = parse_id(&id)?;
    password::check_strength(&body.value.new_password)
        .map_err(|reason| ApiError::Validation(vec![FieldError::new("new_password", reason)]))?;
    let hash = password::hash(body.value.new_password).await?;
    set_password(&app, &caller, &tenant, id, hash, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records a new password hash for `user` (their own change, or an admin's reset).
pub async fn set_password(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    user: Uuid,
    hash: String,
    reset_by_admin: bool,
) -> Result<(), ApiError> {
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        IdempotencyKey(None),
        String::new(),
    );
    let command = ChangeUser::set_password(app, user, hash, reset_by_admin);
    change(app, caller, tenant, idempotency, command)
        .await
        .map(drop)
}

async fn change(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    idempotency: Idempotency,
    command: ChangeUser,
) -> Result<Response, ApiError> {
    let user = command.user();
    let response = commands::execute(app, caller, tenant, idempotency, command).await?;
    see_own_change(app, tenant, user).await;
    Ok(response)
}
