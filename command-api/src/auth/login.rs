//! `POST /v1/auth/token`, `POST /v1/auth/logout`, `POST /v1/auth/revoke`.
//!
//! A wrong tenant, a wrong username and a wrong password get the same 401 and take about
//! the same time: when no user is found, the password is still checked, against a hash
//! made at start-up. Failed attempts are throttled per client network and per account from
//! that network (see `crate::limits`); a correct password is never refused for someone
//! else's failures.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use event_store::TenantId;
use schemas::{Role, Username};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::token::Subject;
use super::{Caller, password};
use crate::extract::ValidJson;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::tenancy::TenantStatus;
use crate::users::parse_role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token))
        .routes(routes!(logout))
        .routes(routes!(revoke))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// The tenant's id; omitted by platform admins.
    #[serde(default)]
    pub tenant: Option<String>,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Exchanges credentials for an access token.
#[utoipa::path(
    post, path = "/v1/auth/token", tag = "auth", request_body = LoginInput,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "The tenant, username or password is wrong (one answer for all three)", body = Problem),
        (status = 403, description = "The tenant is suspended", body = Problem),
        (status = 429, description = "Too many failed logins from this network, or for this account from it", body = Problem),
    )
)]
pub async fn issue_token(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: ValidJson<LoginInput>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let input = body.value;
    let address = client.ip();
    // Only inputs that could name an account become a limiter key or a log field: a
    // malformed tenant or username, or a password longer than any we accept, cannot match,
    // so it is refused at once (no hash spent), counted against the client's network only.
    let tenant = match input.tenant.as_deref().map(TenantId::parse) {
        None => Ok(None),
        Some(Ok(tenant)) => Ok(Some(tenant)),
        Some(Err(_)) => Err(()),
    };
    let username = Username::parse(&input.username);
    let (Ok(tenant), Ok(username), true) =
        (tenant, username, password::could_match(&input.password))
    else {
        app.limits.login_allowed(address, "")?;
        app.limits.login_failed(address, "");
        tracing::info!("login refused: malformed tenant, username or password");
        return Err(ApiError::InvalidCredentials);
    };
    let account = format!(
        "{}/{}",
        tenant.as_ref().map_or("~platform", TenantId::as_str),
        username.as_str()
    );
    app.limits.login_allowed(address, &account)?;

    let found = find_account(&app, tenant.as_ref(), &username).await?;
    let (hash, subject) = match found {
        Some((subject, hash)) => (hash, Some(subject)),
        None => (app.dummy_password_hash.clone(), None),
    };
    let matches = password::verify(hash, input.password).await?;
    let Some(subject) = subject.filter(|_| matches) else {
        app.limits.login_failed(address, &account);
        tracing::info!(account = ?account, "login refused");
        return Err(ApiError::InvalidCredentials);
    };
    if let Some(tenant) = &subject.tenant
        && app
            .tenants
            .get(tenant)
            .is_some_and(|t| t.status == TenantStatus::Suspended)
    {
        return Err(ApiError::Forbidden("the tenant is suspended"));
    }
    let (access_token, claims) = app.tokens.issue(&subject).map_err(ApiError::internal)?;
    tracing::info!(user_id = %claims.sub, tenant = ?claims.tenant, jti = %claims.jti, "token issued");
    Ok(axum::Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: app.tokens.lifetime().as_secs(),
    }))
}

/// The account and its password hash; `None` for an unknown tenant or user alike.
async fn find_account(
    app: &AppState,
    tenant: Option<&TenantId>,
    username: &Username,
) -> Result<Option<(Subject, String)>, ApiError> {
    let username = username.as_str();
    let Some(tenant) = tenant else {
        let row = sqlx::query!(
            "SELECT user_id, display_name, password_hash FROM platform_admins WHERE username = $1",
            username
        )
        .fetch_optional(app.store.pool())
        .await?;
        return Ok(row.map(|row| {
            let subject = Subject {
                user_id: row.user_id,
                display_name: row.display_name,
                tenant: None,
                role: Role::PlatformAdmin,
            };
            (subject, row.password_hash)
        }));
    };
    if app.tenants.get(tenant.as_str()).is_none() {
        return Ok(None);
    }
    let mut tx = app.store.begin(tenant).await?;
    let row = sqlx::query!(
        "SELECT user_id, display_name, role, password_hash FROM users WHERE tenant_id = $1 AND username = $2",
        tenant.as_str(),
        username
    )
    .fetch_optional(tx.connection())
    .await?;
    tx.commit().await?;
    Ok(row.and_then(|row| {
        let role = parse_role(&row.role)?;
        let subject = Subject {
            user_id: row.user_id,
            display_name: row.display_name,
            tenant: Some(tenant.to_string()),
            role,
        };
        Some((subject, row.password_hash))
    }))
}

/// Revokes the token of this request: every instance refuses it from now on.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Revoked")),
    security(("bearer" = []))
)]
pub async fn logout(State(app): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    app.revocations
        .revoke(app.store.pool(), caller.jti, caller.expires_at)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeInput {
    /// The `jti` of the token to revoke.
    pub jti: Uuid,
}

/// Revokes any token by its `jti` (platform admins).
#[utoipa::path(
    post, path = "/v1/auth/revoke", tag = "auth", request_body = RevokeInput,
    responses((status = 204, description = "Revoked")),
    security(("bearer" = []))
)]
pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    body: ValidJson<RevokeInput>,
) -> Result<StatusCode, ApiError> {
    caller.require_platform_admin()?;
    // The token's expiry is unknown here; no token outlives the configured lifetime.
    let lifetime = chrono::Duration::from_std(app.tokens.lifetime()).map_err(ApiError::internal)?;
    app.revocations
        .revoke(
            app.store.pool(),
            body.value.jti,
            chrono::Utc::now() + lifetime,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
