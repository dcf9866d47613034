//! User administration (permission `users:manage`): create, list, read, change display name
//! or role, deactivate, reactivate, reset a password. Every change is a command of the one
//! pipeline: an event on the user's stream (so the audit log shows who changed whose role,
//! and when) and the `users` row beside it, in one transaction.
//!
//! Two rules guard the tenant:
//! - one may only grant what one holds: the role given, and the role of the user acted on,
//!   must have no permission the caller lacks (a user manager cannot make an admin, nor
//!   reset an admin's password to take the account);
//! - the last active admin of a tenant cannot be demoted or deactivated (409): changes to
//!   admins serialize on a per-tenant lock, so two admins demoting each other at once
//!   cannot both succeed.

// utoipa's `IntoParams` expansion qualifies the params type again.
#![allow(unused_qualifications)]

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, Utc};
use event_store::{StreamId, TenantId, TenantTransaction};
use schemas::{
    DomainEvent, Permission, Permissions, RoleName, UserDeactivated, UserEvent,
    UserPasswordChanged, UserReactivated, UserRegistered, UserUpdated,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::UserState;
use super::input::{NewUser, PasswordReset, UserChanges, UserInput, UserPatch};
use crate::auth::sessions::EndReason;
use crate::auth::{Caller, password};
use crate::commands::{self, Command, Landed, Precondition};
use crate::extract::{IdempotencyKey, ValidJson, ValidQuery};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, patch_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(reset_password))
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    #[schema(schema_with = crate::openapi::fields::tenant_role)]
    pub role: String,
    /// False once deactivated: no logins, every token refused.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The `users` row as the API reads it.
struct UserRow {
    user_id: Uuid,
    username: String,
    display_name: String,
    role: String,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.user_id,
            username: row.username,
            display_name: row.display_name,
            role: row.role,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// What `role` allows in `tenant`; 422 naming `field` when the tenant has no such role.
pub fn role_permissions(
    app: &AppState,
    tenant: &TenantId,
    role: &RoleName,
    field: &str,
) -> Result<Permissions, ApiError> {
    app.roles.permissions(tenant.as_str(), role).ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            field,
            format!("`{role}` is not a role of this tenant (see GET /v1/roles)"),
        )])
    })
}

/// 403 unless the caller holds every permission of `granted`.
fn may_grant(caller: &Caller, granted: Permissions) -> Result<(), ApiError> {
    let missing = caller.permissions.missing(granted);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::CannotGrant(missing))
    }
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
    may_grant(
        &caller,
        role_permissions(&app, &tenant, &user.role, "role")?,
    )?;
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&Method::POST, "/v1/users", &body.raw),
    );
    // Hashing takes a while: before the transaction, not inside it.
    let password_hash = password::hash(user.password.clone()).await?;
    let command = RegisterUser::new(user, password_hash);
    let user = command.user_id;
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

/// Registers a user: `UserRegistered` on a new stream, the `users` row beside it.
#[derive(Debug)]
pub struct RegisterUser {
    user_id: Uuid,
    user: NewUser,
    password_hash: String,
    created_at: Option<DateTime<Utc>>,
}

impl RegisterUser {
    pub fn new(user: NewUser, password_hash: String) -> Self {
        Self {
            user_id: Uuid::now_v7(),
            user,
            password_hash,
            created_at: None,
        }
    }

    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    pub fn display_name(&self) -> &str {
        self.user.display_name.as_str()
    }

    pub fn stream(user_id: Uuid) -> StreamId {
        StreamId::for_aggregate(UserEvent::AGGREGATE, user_id)
            .expect("a uuid makes a valid stream id")
    }

    fn event(&self) -> UserEvent {
        UserEvent::from(UserRegistered {
            user_id: self.user_id,
            username: self.user.username.clone(),
            display_name: self.user.display_name.clone(),
            role: self.user.role.clone(),
        })
    }

    /// The `users` row, unique per tenant by username: 409 when it is taken.
    pub async fn insert_row(&mut self, tx: &mut TenantTransaction<'_>) -> Result<(), ApiError> {
        hold_role(tx, &self.user.role).await?;
        let tenant = tx.tenant().as_str().to_owned();
        let inserted = sqlx::query_scalar!(
            r#"INSERT INTO users (tenant_id, user_id, username, display_name, role, password_hash)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (tenant_id, username) DO NOTHING
               RETURNING created_at"#,
            tenant,
            self.user_id,
            self.user.username.as_str(),
            self.user.display_name.as_str(),
            self.user.role.as_str(),
            self.password_hash,
        )
        .fetch_optional(tx.connection())
        .await?;
        let Some(created_at) = inserted else {
            return Err(ApiError::Conflict(format!(
                "the username `{}` is taken in this tenant",
                self.user.username
            )));
        };
        self.created_at = Some(created_at);
        Ok(())
    }

    /// The user as the API shows it.
    pub fn created(&self) -> User {
        let at = self.created_at.unwrap_or_else(Utc::now);
        User {
            id: self.user_id,
            username: self.user.username.to_string(),
            display_name: self.user.display_name.to_string(),
            role: self.user.role.to_string(),
            active: true,
            created_at: at,
            updated_at: at,
        }
    }

    /// The event, for a command that registers a user beside its own stream (a tenant's
    /// first admin).
    pub fn new_event(&self) -> (StreamId, UserEvent) {
        (Self::stream(self.user_id), self.event())
    }
}

impl Command for RegisterUser {
    type Aggregate = UserState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        Self::stream(self.user_id)
    }

    fn precondition(&self) -> Precondition {
        Precondition::NewStream
    }

    fn decide(&mut self, _state: Option<&UserState>) -> Result<Vec<UserEvent>, ApiError> {
        Ok(vec![self.event()])
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _landed: &Landed<'_, UserState>,
    ) -> Result<(), ApiError> {
        self.insert_row(tx).await
    }

    fn respond(&self, _landed: &Landed<'_, UserState>) -> Result<StoredResponse, ApiError> {
        Ok(StoredResponse::json(
            StatusCode::CREATED,
            vec![("location".to_owned(), format!("/v1/users/{}", self.user_id))],
            &self.created(),
        ))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserListParams {
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 200)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// By username.
    pub items: Vec<User>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn cursor_of(username: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(username)
}

fn username_of(cursor: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "cursor",
                "is not a cursor this API returned",
            )])
        })
}

/// The users of the caller's tenant, by username, a page at a time.
#[utoipa::path(
    get, path = "/v1/users", tag = "users", params(UserListParams),
    responses((status = 200, body = UserPage)),
    security(("bearer" = []))
)]
pub async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    ValidQuery(params): ValidQuery<UserListParams>,
) -> Result<axum::Json<UserPage>, ApiError> {
    let tenant = caller.require(Permission::UsersManage)?.clone();
    let limit = match params.limit {
        None => 50,
        Some(limit @ 1..=100) => i64::from(limit),
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "limit",
                "must be between 1 and 100",
            )]));
        }
    };
    let after = params.cursor.as_deref().map(username_of).transpose()?;
    let mut tx = app.store.begin(&tenant).await?;
    let rows = sqlx::query_as!(
        UserRow,
        "SELECT user_id, username, display_name, role, active, created_at, updated_at
         FROM users WHERE tenant_id = $1 AND ($2::text IS NULL OR username > $2)
         ORDER BY username LIMIT $3",
        tenant.as_str(),
        after,
        limit + 1
    )
    .fetch_all(tx.connection())
    .await?;
    tx.commit().await?;
    let mut items: Vec<User> = rows.into_iter().map(User::from).collect();
    let next_cursor = if items.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        items.pop();
        items.last().map(|user| cursor_of(&user.username))
    } else {
        None
    };
    Ok(axum::Json(UserPage { items, next_cursor }))
}

async fn read_user(app: &AppState, tenant: &TenantId, id: Uuid) -> Result<User, ApiError> {
    let mut tx = app.store.begin(tenant).await?;
    let row = sqlx::query_as!(
        UserRow,
        "SELECT user_id, username, display_name, role, active, created_at, updated_at
         FROM users WHERE tenant_id = $1 AND user_id = $2",
        tenant.as_str(),
        id
    )
    .fetch_optional(tx.connection())
    .await?;
    tx.commit().await?;
    row.map(User::from).ok_or(ApiError::NotFound)
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

/// One user of the caller's tenant (anyone may read themselves).
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = User), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn get_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<User>, ApiError> {
    let id = parse_id(&id)?;
    let tenant = if id == caller.user_id {
        caller.own_tenant()?
    } else {
        caller.require(Permission::UsersManage)?
    };
    Ok(axum::Json(read_user(&app, tenant, id).await?))
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
    if let Some(role) = &changes.role {
        may_grant(&caller, role_permissions(&app, &tenant, role, "role")?)?;
    }
    let path = format!("/v1/users/{id}");
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&Method::PATCH, &path, &body.raw),
    );
    change(
        &app,
        &caller,
        &tenant,
        idempotency,
        id,
        UserChange::Update(changes),
    )
    .await
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
    change(&app, &caller, &tenant, idempotency, id, change_to).await
}

/// Sets a user's password (an admin's reset); every session of theirs ends.
#[utoipa::path(
    post, path = "/v1/users/{id}/password", tag = "users", request_body = PasswordReset,
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Reset; the user's sessions have ended"), (status = 404, body = Problem)),
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
    let change_to = UserChange::Password {
        hash,
        reset_by_admin,
    };
    change(app, caller, tenant, idempotency, user, change_to)
        .await
        .map(drop)
}

async fn change(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    idempotency: Idempotency,
    user: Uuid,
    change: UserChange,
) -> Result<Response, ApiError> {
    let command = ChangeUser {
        tenant: tenant.clone(),
        user,
        change,
        caller_permissions: caller.permissions,
        acting_on_self: user == caller.user_id,
        app: app.clone(),
        sessions_ended: None,
        row: None,
    };
    let response = commands::execute(app, caller, tenant, idempotency, command).await?;
    see_own_change(app, tenant, user).await;
    Ok(response)
}

/// What changes about a user.
#[derive(Debug)]
enum UserChange {
    Update(UserChanges),
    Deactivate,
    Reactivate,
    Password { hash: String, reset_by_admin: bool },
}

/// A change to an existing user: its event and the row beside it.
struct ChangeUser {
    tenant: TenantId,
    user: Uuid,
    change: UserChange,
    caller_permissions: Permissions,
    /// Changing one's own password needs no permission over oneself.
    acting_on_self: bool,
    /// For the permissions of the user's current role, and to end sessions.
    app: AppState,
    sessions_ended: Option<EndReason>,
    row: Option<User>,
}

impl std::fmt::Debug for ChangeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeUser")
            .field("user", &self.user)
            .field("change", &self.change)
            .finish_non_exhaustive()
    }
}

impl Command for ChangeUser {
    type Aggregate = UserState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        RegisterUser::stream(self.user)
    }

    fn decide(&mut self, state: Option<&UserState>) -> Result<Vec<UserEvent>, ApiError> {
        let Some(user) = state else {
            return Err(ApiError::NotFound);
        };
        let own_password =
            self.acting_on_self && matches!(self.change, UserChange::Password { .. });
        if !own_password {
            // Whom one may act on: nobody with a permission the caller lacks.
            // A role this instance does not know (yet) counts as holding everything.
            let current = self
                .app
                .roles
                .permissions(self.tenant.as_str(), &user.role)
                .unwrap_or_else(Permissions::all);
            let missing = self.caller_permissions.missing(current);
            if !missing.is_empty() {
                return Err(ApiError::CannotGrant(missing));
            }
        }
        let events: Vec<UserEvent> = match &self.change {
            UserChange::Update(changes) => {
                let display_name = changes
                    .display_name
                    .clone()
                    .filter(|name| *name != user.display_name);
                let role = changes.role.clone().filter(|role| *role != user.role);
                if display_name.is_none() && role.is_none() {
                    Vec::new()
                } else {
                    let previous_role = role.as_ref().map(|_| user.role.clone());
                    vec![
                        UserUpdated {
                            display_name,
                            role,
                            previous_role,
                        }
                        .into(),
                    ]
                }
            }
            UserChange::Deactivate if user.active => vec![UserDeactivated {}.into()],
            UserChange::Reactivate if !user.active => vec![UserReactivated {}.into()],
            UserChange::Deactivate | UserChange::Reactivate => Vec::new(),
            UserChange::Password { reset_by_admin, .. } => vec![
                UserPasswordChanged {
                    reset_by_admin: *reset_by_admin,
                }
                .into(),
            ],
        };
        Ok(events)
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, UserState>,
    ) -> Result<(), ApiError> {
        let tenant = tx.tenant().as_str().to_owned();
        let Some(after) = landed.state else {
            return Err(ApiError::NotFound);
        };
        if !landed.events.is_empty() {
            let was_admin = landed.events.iter().any(|event| match event {
                UserEvent::Updated(updated) => updated
                    .previous_role
                    .as_ref()
                    .is_some_and(|role| role.as_str() == RoleName::ADMIN),
                UserEvent::Deactivated(_) => after.role.as_str() == RoleName::ADMIN,
                _ => false,
            });
            if was_admin {
                ensure_another_admin(tx, &tenant, self.user).await?;
            }
            let given_a_role = landed.events.iter().any(
                |event| matches!(event, UserEvent::Updated(updated) if updated.role.is_some()),
            );
            if given_a_role {
                hold_role(tx, &after.role).await?;
            }
            let (hash, valid_after) = match &self.change {
                UserChange::Password { hash, .. } => (Some(hash.as_str()), true),
                UserChange::Deactivate => (None, true),
                _ => (None, false),
            };
            sqlx::query!(
                "UPDATE users SET display_name = $3, role = $4, active = $5,
                     password_hash = COALESCE($6, password_hash),
                     sessions_valid_after = CASE WHEN $7 THEN date_trunc('second', now()) ELSE sessions_valid_after END,
                     updated_at = now()
                 WHERE tenant_id = $1 AND user_id = $2",
                tenant,
                self.user,
                after.display_name.as_str(),
                after.role.as_str(),
                after.active,
                hash,
                valid_after
            )
            .execute(tx.connection())
            .await?;
            let reason = match self.change {
                UserChange::Deactivate => Some(EndReason::Deactivated),
                UserChange::Password { .. } => Some(EndReason::PasswordChanged),
                _ => None,
            };
            if let Some(reason) = reason {
                self.app
                    .sessions
                    .end_all_of_users(tx.connection(), &[self.user], reason)
                    .await?;
                self.sessions_ended = Some(reason);
            }
        }
        let row = sqlx::query_as!(
            UserRow,
            "SELECT user_id, username, display_name, role, active, created_at, updated_at
             FROM users WHERE tenant_id = $1 AND user_id = $2",
            tenant,
            self.user
        )
        .fetch_optional(tx.connection())
        .await?
        .ok_or(ApiError::NotFound)?;
        self.row = Some(row.into());
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, UserState>) -> Result<StoredResponse, ApiError> {
        let user = self.row.as_ref().ok_or(ApiError::NotFound)?;
        Ok(StoredResponse::json(StatusCode::OK, Vec::new(), user))
    }
}

/// 409 unless the tenant keeps an active admin besides `user`. Changes to admins serialize
/// on a per-tenant lock, so that two concurrent demotions cannot each count the other.
/// Holds a tenant role's row while a user is given it: a removal of the role that
/// committed first makes this a 422, and one that comes after waits for this transaction
/// and then finds the role assigned (409).
async fn hold_role(tx: &mut TenantTransaction<'_>, role: &RoleName) -> Result<(), ApiError> {
    if role.is_builtin() {
        return Ok(());
    }
    let tenant = tx.tenant().as_str().to_owned();
    let held = sqlx::query_scalar!(
        r#"SELECT true AS "held!" FROM roles WHERE tenant_id = $1 AND name = $2 FOR SHARE"#,
        tenant,
        role.as_str()
    )
    .fetch_optional(tx.connection())
    .await?;
    if held.is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "role",
            "is not a role of this tenant",
        )]));
    }
    Ok(())
}

async fn ensure_another_admin(
    tx: &mut TenantTransaction<'_>,
    tenant: &str,
    user: Uuid,
) -> Result<(), ApiError> {
    let lock = format!("chronicle:admins:{tenant}");
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        lock
    )
    .execute(tx.connection())
    .await?;
    let others = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM users
           WHERE tenant_id = $1 AND role = 'admin' AND active AND user_id <> $2"#,
        tenant,
        user
    )
    .fetch_one(tx.connection())
    .await?;
    if others == 0 {
        return Err(ApiError::Conflict(
            "the last active admin of a tenant cannot be demoted or deactivated".to_owned(),
        ));
    }
    Ok(())
}
