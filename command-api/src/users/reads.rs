//! The users of a tenant as the API shows them, read from the `users` table: a page of
//! them, or one.

// utoipa's `IntoParams` expansion qualifies the params type again.
#![allow(unused_qualifications)]

use axum::extract::{Path, State};
use base64::Engine;
use chrono::{DateTime, Utc};
use event_store::{TenantId, TenantTransaction};
use schemas::Permission;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::extract::ValidQuery;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user))
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

/// One user of the transaction's tenant.
pub async fn read_user_row(
    tx: &mut TenantTransaction<'_>,
    id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    let tenant = tx.tenant().as_str().to_owned();
    let row = sqlx::query_as!(
        UserRow,
        "SELECT user_id, username, display_name, role, active, created_at, updated_at
         FROM users WHERE tenant_id = $1 AND user_id = $2",
        tenant,
        id
    )
    .fetch_optional(tx.connection())
    .await?;
    Ok(row.map(User::from))
}

async fn read_user(app: &AppState, tenant: &TenantId, id: Uuid) -> Result<User, ApiError> {
    let mut tx = app.store.begin(tenant).await?;
    let user = read_user_row(&mut tx, id).await?;
    tx.commit().await?;
    user.ok_or(ApiError::NotFound)
}

/// An id that is not a UUID names no user: 404, as for any unknown id.
pub fn parse_id(id: &str) -> Result<Uuid, ApiError> {
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
