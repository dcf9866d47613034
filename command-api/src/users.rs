//! A tenant's users (tenant admins only). The password is hashed with Argon2id and kept
//! in the `users` table; the event records who the user is, never the hash.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use event_store::{ExpectedVersion, NewEvent, StreamId, TenantTransaction};
use schemas::{DisplayName, DomainEvent, Role, UserEvent, UserRegistered, Username};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Caller, password};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, FieldError, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user, list_users))
}

/// `POST /v1/users`, and the admin of `POST /v1/tenants`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// 3 to 64 characters of a-z, 0-9, `.`, `_`, `-`; case-insensitive.
    pub username: String,
    /// 12 to 128 characters.
    pub password: String,
    pub display_name: String,
    /// `admin`, `member` or `viewer`.
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "member".to_owned()
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    #[schema(value_type = String)]
    pub role: Role,
}

/// A user's validated fields.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub password: String,
    pub display_name: DisplayName,
    pub role: Role,
}

impl UserInput {
    /// Validates every field; `prefix` names the fields in errors (e.g. `admin.`).
    pub fn validate(self, prefix: &str) -> Result<NewUser, Vec<FieldError>> {
        let mut errors = Vec::new();
        let username = Username::parse(&self.username)
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}username"), e)))
            .ok();
        if let Err(reason) = password::check_strength(&self.password) {
            errors.push(FieldError::new(format!("{prefix}password"), reason));
        }
        let display_name = DisplayName::parse(&self.display_name)
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}display_name"), e)))
            .ok();
        let role = parse_role(&self.role);
        if role.is_none() {
            errors.push(FieldError::new(
                format!("{prefix}role"),
                "must be admin, member or viewer",
            ));
        }
        match (username, display_name, role) {
            (Some(username), Some(display_name), Some(role)) if errors.is_empty() => Ok(NewUser {
                username,
                password: self.password,
                display_name,
                role,
            }),
            _ => Err(errors),
        }
    }
}

/// Inserts the user and appends `UserRegistered`, in the caller's transaction.
/// `password_hash` is computed before the transaction: hashing takes a while.
pub async fn register(
    tx: &mut TenantTransaction<'_>,
    user: &NewUser,
    password_hash: &str,
    metadata: event_store::EventMetadata,
) -> Result<User, ApiError> {
    let user_id = Uuid::now_v7();
    let tenant = tx.tenant().as_str().to_owned();
    let inserted = sqlx::query!(
        r#"INSERT INTO users (tenant_id, user_id, username, display_name, role, password_hash)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, username) DO NOTHING"#,
        tenant,
        user_id,
        user.username.as_str(),
        user.display_name.as_str(),
        role_name(user.role),
        password_hash,
    )
    .execute(tx.connection())
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!(
            "the username `{}` is taken in this tenant",
            user.username
        )));
    }
    let event = UserEvent::from(UserRegistered {
        user_id,
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        role: user.role,
    });
    let stream =
        StreamId::for_aggregate(UserEvent::AGGREGATE, user_id).map_err(ApiError::internal)?;
    tx.append_to_stream(
        &stream,
        ExpectedVersion::NoStream,
        vec![NewEvent::new(&event, metadata)],
    )
    .await?;
    Ok(User {
        id: user_id,
        username: user.username.to_string(),
        display_name: user.display_name.to_string(),
        role: user.role,
    })
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::PlatformAdmin => "platform_admin",
        Role::Admin => "admin",
        Role::Member => "member",
        Role::Viewer => "viewer",
    }
}

pub fn parse_role(role: &str) -> Option<Role> {
    match role {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        "viewer" => Some(Role::Viewer),
        _ => None,
    }
}

/// Adds a user to the caller's tenant.
#[utoipa::path(
    post, path = "/v1/users", tag = "users", request_body = UserInput,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 201, body = User), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create_user(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: ValidJson<UserInput>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_with_role(&[Role::Admin])?.clone();
    app.limits.write(tenant.as_str())?;
    let user = body.value.validate("").map_err(ApiError::Validation)?;
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        key,
        &Method::POST,
        "/v1/users",
        &body.raw,
    );
    let password_hash = password::hash(user.password.clone()).await?;

    let mut tx = app.store.begin(&tenant).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let created = register(&mut tx, &user, &password_hash, caller.event_metadata()).await?;
    let response = StoredResponse::json(
        StatusCode::CREATED,
        vec![("location".to_owned(), format!("/v1/users/{}", created.id))],
        &created,
    );
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    Ok(response.into_response())
}

/// The users of the caller's tenant.
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 403, body = Problem)),
    security(("bearer" = []))
)]
pub async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    let tenant = caller.tenant_with_role(&[Role::Admin])?.clone();
    let mut tx = app.store.begin(&tenant).await?;
    let rows = sqlx::query!(
        "SELECT user_id, username, display_name, role FROM users WHERE tenant_id = $1 ORDER BY username",
        tenant.as_str()
    )
    .fetch_all(tx.connection())
    .await?;
    tx.commit().await?;
    let users = rows
        .into_iter()
        .map(|row| User {
            id: row.user_id,
            username: row.username,
            display_name: row.display_name,
            role: parse_role(&row.role).unwrap_or(Role::Viewer),
        })
        .collect();
    Ok(axum::Json(users))
}
