//! `GET /v1/roles`, `POST /v1/roles`, `PATCH /v1/roles/{name}`, `DELETE /v1/roles/{name}`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use event_store::{StreamId, TenantId, TenantTransaction};
use schemas::{
    DomainEvent, Permission, Permissions, RoleChanged, RoleDefined, RoleName, RoleRemoved,
    TenantEvent,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::commands::{self, Command, Landed};
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::openapi::fields;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;
use crate::tenancy::aggregate::TenantState;

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

fn may_grant(caller: &Caller, permissions: &[Permission]) -> Result<(), ApiError> {
    let missing = caller
        .permissions
        .missing(Permissions::of(permissions.iter().copied()));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::CannotGrant(missing))
    }
}

/// Taking a permission away is granting less, but only someone who holds everything a role
/// holds may reshape or remove it.
fn may_reshape(
    app: &AppState,
    caller: &Caller,
    tenant: &TenantId,
    name: &RoleName,
) -> Result<(), ApiError> {
    match app.roles.permissions(tenant.as_str(), name) {
        Some(current) => may_grant(caller, &current.iter().collect::<Vec<_>>()),
        None => Ok(()),
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
    may_grant(&caller, &permissions)?;
    let request = (Method::POST, "/v1/roles", body.raw.as_ref());
    run(
        &app,
        &caller,
        key,
        request,
        name,
        RoleChange::Define(permissions),
    )
    .await
}

fn role_name_in_path(name: &str) -> Result<RoleName, ApiError> {
    let name = RoleName::parse(name).map_err(|_| ApiError::NotFound)?;
    if name.is_builtin() {
        return Err(ApiError::Forbidden("built-in roles cannot be changed"));
    }
    Ok(name)
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
    let tenant = caller.require(Permission::RolesManage)?.clone();
    let name = role_name_in_path(&name)?;
    let permissions = parse_permissions(&body.value.permissions)?;
    may_grant(&caller, &permissions)?;
    may_reshape(&app, &caller, &tenant, &name)?;
    let path = format!("/v1/roles/{name}");
    let request = (Method::PATCH, path.as_str(), body.raw.as_ref());
    run(
        &app,
        &caller,
        key,
        request,
        name,
        RoleChange::Change(permissions),
    )
    .await
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
    let tenant = caller.require(Permission::RolesManage)?.clone();
    let name = role_name_in_path(&name)?;
    may_reshape(&app, &caller, &tenant, &name)?;
    let path = format!("/v1/roles/{name}");
    let request = (Method::DELETE, path.as_str(), &b""[..]);
    run(&app, &caller, key, request, name, RoleChange::Remove).await
}

/// Runs a role command through the command pipeline, keyed by the request (method, path,
/// body) it answers, and applies it on this instance at once.
async fn run(
    app: &AppState,
    caller: &Caller,
    key: IdempotencyKey,
    (method, path, body): (Method, &str, &[u8]),
    name: RoleName,
    change: RoleChange,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::RolesManage)?.clone();
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(&method, path, body),
    );
    let command = RoleCommand {
        tenant: tenant.clone(),
        name,
        change,
        users: 0,
    };
    let response = commands::execute(app, caller, &tenant, idempotency, command).await?;
    see_own_change(app, &tenant).await;
    Ok(response)
}

#[derive(Debug)]
enum RoleChange {
    Define(Vec<Permission>),
    Change(Vec<Permission>),
    Remove,
}

/// A change to a tenant's roles: an event on the tenant's stream, the `roles` row beside it.
#[derive(Debug)]
struct RoleCommand {
    tenant: TenantId,
    name: RoleName,
    change: RoleChange,
    /// Users with the role, for the response.
    users: i64,
}

impl Command for RoleCommand {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        StreamId::for_aggregate(TenantEvent::AGGREGATE, &self.tenant)
            .expect("tenant ids make valid stream ids")
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        if state.is_none() {
            return Err(ApiError::NotFound);
        }
        let name = self.name.clone();
        Ok(vec![match &self.change {
            RoleChange::Define(permissions) => RoleDefined {
                name,
                permissions: permissions.clone(),
            }
            .into(),
            RoleChange::Change(permissions) => RoleChanged {
                name,
                permissions: permissions.clone(),
            }
            .into(),
            RoleChange::Remove => RoleRemoved { name }.into(),
        }])
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        let tenant = self.tenant.as_str();
        let name = self.name.as_str();
        match &self.change {
            RoleChange::Define(permissions) => {
                let names: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
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
            RoleChange::Change(permissions) => {
                let names: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
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
            RoleChange::Remove => {
                // The role's row is locked first, so no user can be given it meanwhile
                // (assigning reads the registry, and the registry follows this row).
                let exists = sqlx::query_scalar!(
                    "SELECT 1 AS one FROM roles WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
                    tenant,
                    name
                )
                .fetch_optional(tx.connection())
                .await?;
                if exists.is_none() {
                    return Err(ApiError::NotFound);
                }
                let holders = sqlx::query_scalar!(
                    r#"SELECT count(*) AS "count!" FROM users WHERE tenant_id = $1 AND role = $2"#,
                    tenant,
                    name
                )
                .fetch_one(tx.connection())
                .await?;
                if holders > 0 {
                    return Err(ApiError::Conflict(format!(
                        "{holders} user(s) have the role `{name}`: give them another first"
                    )));
                }
                sqlx::query!(
                    "DELETE FROM roles WHERE tenant_id = $1 AND name = $2",
                    tenant,
                    name
                )
                .execute(tx.connection())
                .await?;
            }
        }
        if !matches!(self.change, RoleChange::Remove) {
            self.users = sqlx::query_scalar!(
                r#"SELECT count(*) AS "count!" FROM users WHERE tenant_id = $1 AND role = $2"#,
                tenant,
                name
            )
            .fetch_one(tx.connection())
            .await?;
        }
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        let role = |permissions: &Vec<Permission>| Role {
            name: self.name.to_string(),
            permissions: permissions.clone(),
            builtin: false,
            users: self.users,
        };
        Ok(match &self.change {
            RoleChange::Define(permissions) => StoredResponse::json(
                StatusCode::CREATED,
                vec![("location".to_owned(), format!("/v1/roles/{}", self.name))],
                &role(permissions),
            ),
            RoleChange::Change(permissions) => {
                StoredResponse::json(StatusCode::OK, Vec::new(), &role(permissions))
            }
            RoleChange::Remove => StoredResponse {
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
