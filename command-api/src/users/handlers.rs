//! The tenant admin's user endpoints. Creating a user is a command of the one pipeline: the
//! `UserRegistered` event and the `users` row (with the password hash) in one transaction.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use event_store::{StreamId, TenantTransaction};
use schemas::{DomainEvent, Role, UserEvent, UserRegistered};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{UserState, parse_role, role_name};
use super::input::{NewUser, UserInput};
use crate::auth::{Caller, password};
use crate::commands::{self, Command, Landed, Precondition};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user, list_users))
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    #[schema(schema_with = crate::openapi::fields::tenant_role)]
    pub role: Role,
}

/// Adds a user to the caller's tenant.
#[utoipa::path(
    post, path = "/v1/users", tag = "users", request_body = UserInput,
    params(IdempotencyKey),
    responses(
        (status = 201, body = User,
         headers(("Location" = String, description = "`/v1/users/{id}`"))),
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
    let tenant = caller.tenant_with_role(&[Role::Admin])?.clone();
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
    commands::execute(&app, &caller, &tenant, idempotency, command).await
}

/// Registers a user: `UserRegistered` on a new stream, the `users` row beside it.
#[derive(Debug)]
pub struct RegisterUser {
    user_id: Uuid,
    user: NewUser,
    password_hash: String,
}

impl RegisterUser {
    pub fn new(user: NewUser, password_hash: String) -> Self {
        Self {
            user_id: Uuid::now_v7(),
            user,
            password_hash,
        }
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
            role: self.user.role,
        })
    }

    /// The `users` row, unique per tenant by username: 409 when it is taken.
    pub async fn insert_row(&self, tx: &mut TenantTransaction<'_>) -> Result<(), ApiError> {
        let tenant = tx.tenant().as_str().to_owned();
        let inserted = sqlx::query!(
            r#"INSERT INTO users (tenant_id, user_id, username, display_name, role, password_hash)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (tenant_id, username) DO NOTHING"#,
            tenant,
            self.user_id,
            self.user.username.as_str(),
            self.user.display_name.as_str(),
            role_name(self.user.role),
            self.password_hash,
        )
        .execute(tx.connection())
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(ApiError::Conflict(format!(
                "the username `{}` is taken in this tenant",
                self.user.username
            )));
        }
        Ok(())
    }

    /// The user as the API shows it.
    pub fn created(&self) -> User {
        User {
            id: self.user_id,
            username: self.user.username.to_string(),
            display_name: self.user.display_name.to_string(),
            role: self.user.role,
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

/// The users of the caller's tenant.
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>)),
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
