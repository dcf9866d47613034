//! `GET /v1/roles`, `POST /v1/roles`, `PATCH /v1/roles/{name}`, `DELETE /v1/roles/{name}`.
//! Each handler parses its request and runs [`RoleWrite`] through the one pipeline; the
//! rules are `super::aggregate`'s, with their facts read in the command's transaction.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use event_store::{StreamId, TenantId, TenantTransaction};
use schemas::{Permission, RoleName, TenantEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::aggregate::{RoleCommand, RoleError, RoleFacts, decide};
use crate::access::locked::{self, Hold};
use crate::auth::Caller;
use crate::commands::{self, Command, Landed};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::openapi::fields;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;
use crate::tenancy::aggregate::{TenantState, tenant_stream};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, define_role))
        .routes(routes!(change_role, remove_role))
}

/// A role as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Role {
    #[schema(schema_with = fields::tenant_role)]
    pub name: String,
    #[schema(schema_with = fields::permissions)]
    pub permissions: Vec<Permission>,
    /// Built-in roles are predefined and cannot be changed or removed.
    pub builtin: bool,
    /// Users of the tenant with this role.
    pub users: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    /// The built-in roles first, then the tenant's own by name.
    pub items: Vec<Role>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// 2 to 40 characters of a-z, 0-9, `_`, `-`, starting with a letter; not a built-in
    /// role's name.
    #[schema(schema_with = fields::tenant_role)]
    pub name: String,
    #[schema(schema_with = fields::permissions)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    /// The whole new set.
    #[schema(schema_with = fields::permissions)]
    pub permissions: Vec<String>,
}

/// Parses permission names, naming each unknown one.
fn parse_permissions(names: &[String]) -> Result<Vec<Permission>, ApiError> {
    let mut errors = Vec::new();
    let mut permissions = Vec::new();
    for (index, name) in names.iter().enumerate() {
        match Permission::parse(name) {
            Some(permission) if !permissions.contains(&permission) => permissions.push(permission),
            Some(_) => {}
            None => errors.push(FieldError::new(
                format!("permissions[{index}]"),
                "is not a permission (see the Permission schema)",
            )),
        }
    }
    if errors.is_empty() {
        permissions.sort();
        Ok(permissions)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The roles of the caller's tenant, built-in ones included (`roles:manage` or
/// `users:manage`: whoever assigns roles needs to see them).
#[utoipa::path(
    get, path = "/v1/roles", tag = "roles",
    responses((status = 200, body = RoleList)),
    security(("bearer" = []))
)]
pub async fn list_roles(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<RoleList>, ApiError> {
    let tenant = caller
        .require(Permission::RolesManage)
        .or_else(|_| caller.require(Permission::UsersManage))?
        .clone();
    let mut tx = app.store.begin(&tenant).await?;
    let own = sqlx::query!(
        "SELECT name, permissions FROM roles WHERE tenant_id = $1 ORDER BY name",
        tenant.as_str()
    )
    .fetch_all(tx.connection())
    .await?;
    let counts: BTreeMap<String, i64> = sqlx::query!(
        r#"SELECT role, count(*) AS "count!" FROM users WHERE tenant_id = $1 GROUP BY role"#,
        tenant.as_str()
    )
    .fetch_all(tx.connection())
    .await?
    .into_iter()
    .map(|row| (row.role, row.count))
    .collect();
    tx.commit().await?;
    let builtin = [RoleName::ADMIN, RoleName::MEMBER, RoleName::VIEWER]
        .into_iter()
        .map(|name| {
            let role = RoleName::parse(name).expect("built-in names are valid");
            Role {
                permissions: role
                    .builtin_permissions()
                    .unwrap_or_default()
                    .iter()
                    .collect(),
                name: name.to_owned(),
                builtin: true,
                users: counts.get(name).copied().unwrap_or(0),
            }
        });
    let own = own.into_iter().map(|row| Role {
        users: counts.get(&row.name).copied().unwrap_or(0),
        permissions: row
            .permissions
            .iter()
            .filter_map(|p| Permission::parse(p))
            .collect(),
        name: row.name,
        builtin: false,
    });
    Ok(axum::Json(RoleList {
        items: builtin.chain(own).collect(),
    }))
}

/// Defines a role of the tenant's own.
#[utoipa::path(
    post, path = "/v1/roles", tag = "roles", request_body = RoleInput,
    params(IdempotencyKey),
    responses(
        (status = 201, body = Role, headers(("Location" = String, description = "`/v1/roles/{name}`"))),
        (status = 403, description = "No `roles:manage`, or a permission the caller does not hold", body = Problem),
        (status = 409, description = "The tenant has a role of this name", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn define_role(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: ValidJson<RoleInput>,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesManage)?;
    let name = RoleName::parse_custom(&body.value.name)
        .map_err(|e| ApiError::Validation(vec![FieldError::new("name", e)]))?;
    let permissions = parse_permissions(&body.value.permissions)?;
    let request = (Method::POST, "/v1/roles", body.raw.as_ref());
    let command = RoleCommand::Define { name, permissions };
    run(&app, &caller, key, request, command).await
}

/// A path segment that is no role name names no role: 404. (A built-in role's name is
/// one; the aggregate refuses to change it.)
fn role_name_in_path(name: &str) -> Result<RoleName, ApiError> {
    RoleName::parse(name).map_err(|_| ApiError::NotFound)
}

/// Gives a role of the tenant's own another set of permissions; applies within a second
/// to every user with the role, tokens already issued included.
#[utoipa::path(
    patch, path = "/v1/roles/{name}", tag = "roles", request_body = RolePatch,
    params(("name" = String, Path), IdempotencyKey),
    responses(
        (status = 200, body = Role),
        (status = 403, description = "A built-in role, no `roles:manage`, or a permission the caller does not hold", body = Problem),
        (status = 404, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn change_role(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    key: IdempotencyKey,
    body: ValidJson<RolePatch>,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesManage)?;
    let name = role_name_in_path(&name)?;
    let permissions = parse_permissions(&body.value.permissions)?;
    let path = format!("/v1/roles/{name}");
    let request = (Method::PATCH, path.as_str(), body.raw.as_ref());
    let command = RoleCommand::Change { name, permissions };
    run(&app, &caller, key, request, command).await
}

/// Removes a role of the tenant's own; 409 while a user has it.
#[utoipa::path(
    delete, path = "/v1/roles/{name}", tag = "roles",
    params(("name" = String, Path), IdempotencyKey),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, body = Problem),
        (status = 409, description = "A user has the role", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn remove_role(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    key: IdempotencyKey,
) -> Result<Response, ApiError> {
    caller.require(Permission::RolesManage)?;
    let name = role_name_in_path(&name)?;
    let path = format!("/v1/roles/{name}");
    let request = (Method::DELETE, path.as_str(), &b""[..]);
    run(&app, &caller, key, request, RoleCommand::Remove { name }).await
}

/// Runs a role command through the command pipeline, keyed by the request (method, path,
/// body) it answers, and applies it on this instance at once.
async fn run(
    app: &AppState,
    caller: &Caller,
    key: IdempotencyKey,
    (method, path, body): (Method, &str, &[u8]),
    command: RoleCommand,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::RolesManage)?.clone();
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&method, path, body),
    );
    let command = RoleWrite {
        tenant: tenant.clone(),
        command,
        facts: RoleFacts::default(),
    };
    let response = commands::execute(app, caller, &tenant, idempotency, command).await?;
    see_own_change(app, &tenant).await;
    Ok(response)
}

impl From<RoleError> for ApiError {
    fn from(error: RoleError) -> Self {
        match error {
            RoleError::TenantNotFound | RoleError::NotFound(_) => ApiError::NotFound,
            RoleError::Builtin => ApiError::Forbidden("built-in roles cannot be changed"),
            RoleError::CannotGrant(missing) => ApiError::CannotGrant(missing),
            RoleError::AlreadyDefined(_) | RoleError::InUse { .. } => {
                ApiError::Conflict(error.to_string())
            }
        }
    }
}

/// A change to a tenant's roles: an event on the tenant's stream, the `roles` row beside it.
#[derive(Debug)]
struct RoleWrite {
    tenant: TenantId,
    command: RoleCommand,
    facts: RoleFacts,
}

impl RoleWrite {
    fn name(&self) -> &RoleName {
        match &self.command {
            RoleCommand::Define { name, .. }
            | RoleCommand::Change { name, .. }
            | RoleCommand::Remove { name } => name,
        }
    }
}

impl Command for RoleWrite {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.tenant)
    }

    async fn read_facts(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _state: Option<&TenantState>,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        let tenant = self.tenant.as_str().to_owned();
        let name = self.name().clone();
        // Role changes of a tenant queue here first: each locks its role's row for update
        // and the actor's role's row for share, which in two orders would deadlock.
        let lock = format!("chronicle:roles:{tenant}");
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            lock
        )
        .execute(tx.connection())
        .await?;
        // Locked for update: no user is given the role (which holds it for share) until
        // this commits, so `holders` below stays true.
        self.facts.current = locked::role_permissions(tx, &name, Hold::Update).await?;
        self.facts.actor = locked::user_permissions(tx, caller.user_id).await?;
        let holders = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM users WHERE tenant_id = $1 AND role = $2"#,
            tenant,
            name.as_str()
        )
        .fetch_one(tx.connection())
        .await?;
        self.facts.holders = u64::try_from(holders).unwrap_or(0);
        Ok(())
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        Ok(decide(state, self.command.clone(), &self.facts)?)
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        let tenant = self.tenant.as_str();
        match &self.command {
            RoleCommand::Define { name, permissions } => {
                let names: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
                let name = name.as_str();
                // The decision saw no such role; a definition committed since (the stream
                // would have moved on, so this is a second line only) is still a 409.
                let inserted = sqlx::query!(
                    "INSERT INTO roles (tenant_id, name, permissions) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, name) DO NOTHING",
                    tenant,
                    name,
                    &names
                )
                .execute(tx.connection())
                .await?;
                if inserted.rows_affected() == 0 {
                    return Err(ApiError::Conflict(format!(
                        "the tenant has a role `{name}` already"
                    )));
                }
            }
            RoleCommand::Change { name, permissions } => {
                let names: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
                let name = name.as_str();
                let updated = sqlx::query!(
                    "UPDATE roles SET permissions = $3, updated_at = now()
                     WHERE tenant_id = $1 AND name = $2",
                    tenant,
                    name,
                    &names
                )
                .execute(tx.connection())
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(ApiError::NotFound);
                }
            }
            RoleCommand::Remove { name } => {
                let name = name.as_str();
                sqlx::query!(
                    "DELETE FROM roles WHERE tenant_id = $1 AND name = $2",
                    tenant,
                    name
                )
                .execute(tx.connection())
                .await?;
            }
        }
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        let role = |permissions: &Vec<Permission>| Role {
            name: self.name().to_string(),
            permissions: permissions.clone(),
            builtin: false,
            users: i64::try_from(self.facts.holders).unwrap_or(i64::MAX),
        };
        Ok(match &self.command {
            RoleCommand::Define { name, permissions } => StoredResponse::json(
                StatusCode::CREATED,
                vec![("location".to_owned(), format!("/v1/roles/{name}"))],
                &role(permissions),
            ),
            RoleCommand::Change { permissions, .. } => {
                StoredResponse::json(StatusCode::OK, Vec::new(), &role(permissions))
            }
            RoleCommand::Remove { .. } => StoredResponse {
                status: StatusCode::NO_CONTENT,
                headers: Vec::new(),
                body: Vec::new(),
                replayed: false,
            },
        })
    }
}

/// This instance applies a role change it made at once (the change feed tells the others
/// within a second).
async fn see_own_change(app: &AppState, tenant: &TenantId) {
    if let Err(error) = app
        .roles
        .reload_tenant(app.store.pool(), tenant.as_str())
        .await
    {
        tracing::warn!(%error, "reloading the tenant's roles failed; the change feed will bring them");
    }
}
