//! `POST /v1/auth/token`, `POST /v1/auth/refresh`, `POST /v1/auth/logout`,
//! `POST /v1/auth/revoke`, `POST /v1/auth/password`.
//!
//! The tenant of a login is named by the body's `tenant`, the host
//! (`<tenant>.<base domain>`) or `X-Tenant-ID`; when two name different tenants: 400.
//!
//! A wrong tenant, a wrong username and a wrong password get the same 401 and take about
//! the same time: when no user is found, the password is still checked, against a hash
//! made at start-up. Failed attempts are throttled per client network and per account from
//! that network (see `crate::limits`); a correct password is never refused for someone
//! else's failures.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use event_store::TenantId;
use schemas::{RoleName, Username};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::sessions::{EndReason, Issued, RefreshError};
use super::token::Subject;
use super::{Caller, password};
use crate::extract::ValidJson;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;
use crate::tenancy::{TenantStatus, host};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(revoke))
        .routes(routes!(change_password))
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
    /// Opaque; exchange it at `POST /v1/auth/refresh` for new tokens. Once only: it is
    /// spent by the exchange, and presenting it again ends its session.
    pub refresh_token: String,
    /// Seconds until the refresh token expires unused (each refresh starts it afresh).
    pub refresh_expires_in: u64,
}

impl TokenResponse {
    fn issue(app: &AppState, subject: &Subject, refresh: Issued) -> Result<Self, ApiError> {
        let (access_token, claims) = app.tokens.issue(subject).map_err(ApiError::internal)?;
        tracing::info!(user_id = %claims.sub, tenant = ?claims.tenant, jti = %claims.jti, session = %refresh.session, "token issued");
        let refresh_expires_in = (refresh.expires_at - chrono::Utc::now())
            .num_seconds()
            .max(0)
            .unsigned_abs();
        Ok(Self {
            access_token,
            token_type: "Bearer",
            expires_in: app.tokens.lifetime().as_secs(),
            refresh_token: refresh.token,
            refresh_expires_in,
        })
    }
}

/// The tenant a login or sign-up names: the body's, the host's or `X-Tenant-ID`'s (400 when
/// two differ).
pub fn named_tenant(
    app: &AppState,
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let by_request = host::tenant_named_by_request(headers, &app.config.base_domain)
        .map_err(ApiError::BadHeader)?;
    match (body, by_request) {
        (Some(body), Some(request)) if body != request => {
            Err(ApiError::BadHeader(FieldError::new(
                "X-Tenant-ID",
                format!("the body names `{body}`, but the host or X-Tenant-ID names `{request}`"),
            )))
        }
        (Some(body), _) => Ok(Some(body.to_owned())),
        (None, request) => Ok(request),
    }
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
    headers: HeaderMap,
    body: ValidJson<LoginInput>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let mut input = body.value;
    input.tenant = named_tenant(&app, &headers, input.tenant.as_deref())?;
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
    let matches = password::verify(hash.clone(), input.password).await?;
    let Some(subject) = subject.filter(|_| matches) else {
        app.limits.login_failed(address, &account);
        tracing::info!(account = ?account, "login refused");
        return Err(ApiError::InvalidCredentials);
    };
    let refresh = match &subject.tenant {
        None => {
            let mut conn = app.store.pool().acquire().await?;
            app.sessions.start(&mut conn, subject.user_id).await?
        }
        Some(tenant) => {
            match app.tenants.get(tenant).map(|t| t.status) {
                Some(TenantStatus::Active) => {}
                Some(TenantStatus::Suspended) => {
                    return Err(ApiError::Forbidden("the tenant is suspended"));
                }
                // Still being set up: as if it did not exist.
                _ => return Err(ApiError::InvalidCredentials),
            }
            let tenant = TenantId::parse(tenant).map_err(ApiError::internal)?;
            start_tenant_session(&app, &tenant, subject.user_id, &hash).await?
        }
    };
    let subject = Subject {
        session: Some(refresh.session),
        ..subject
    };
    Ok(axum::Json(TokenResponse::issue(&app, &subject, refresh)?))
}

/// Starts the session of a tenant user whose password (`verified_hash`) just matched, in a
/// transaction holding their row: a password change or deactivation committed since the
/// check refuses the login, and one still to come waits for this session and then ends it.
async fn start_tenant_session(
    app: &AppState,
    tenant: &TenantId,
    user: Uuid,
    verified_hash: &str,
) -> Result<Issued, ApiError> {
    let mut tx = app.store.begin(tenant).await?;
    let active = sqlx::query_scalar!(
        "SELECT active FROM users WHERE tenant_id = $1 AND user_id = $2 AND password_hash = $3
         FOR SHARE",
        tenant.as_str(),
        user,
        verified_hash
    )
    .fetch_optional(tx.connection())
    .await?;
    match active {
        None => return Err(ApiError::InvalidCredentials),
        // Only someone who knows the password learns that the account is deactivated.
        Some(false) => return Err(ApiError::Forbidden("the account is deactivated")),
        Some(true) => {}
    }
    let issued = app.sessions.start(tx.connection(), user).await?;
    tx.commit().await?;
    Ok(issued)
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
                role: RoleName::PLATFORM_ADMIN.to_owned(),
                session: None,
            };
            (subject, row.password_hash)
        }));
    };
    if app
        .tenants
        .get(tenant.as_str())
        .is_none_or(|t| t.status == TenantStatus::Pending)
    {
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
    Ok(row.map(|row| {
        let subject = Subject {
            user_id: row.user_id,
            display_name: row.display_name,
            tenant: Some(tenant.to_string()),
            role: row.role,
            session: None,
        };
        (subject, row.password_hash)
    }))
}

/// Ends the session of this request: its access token and every token of its session
/// (refresh tokens included) are refused on every instance from now on.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out")),
    security(("bearer" = []))
)]
pub async fn logout(State(app): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    app.revocations
        .revoke(app.store.pool(), caller.jti, caller.expires_at)
        .await?;
    if let Some(session) = caller.session {
        app.sessions
            .end(app.store.pool(), session, EndReason::Logout)
            .await?;
        app.revocations.session_ended(session);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    /// The refresh token of the last login or refresh.
    #[schema(max_length = 128)]
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new access token and a new refresh token (the one
/// presented is spent). Presenting a spent one ends its whole session: 401.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshInput,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Unknown, expired, spent or ended refresh token", body = Problem),
        (status = 403, description = "The tenant is suspended or the account deactivated", body = Problem),
    )
)]
pub async fn refresh(
    State(app): State<AppState>,
    body: ValidJson<RefreshInput>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let continued = match app
        .sessions
        .refresh(app.store.pool(), &body.value.refresh_token)
        .await
    {
        Ok(continued) => continued,
        Err(RefreshError::Invalid) => {
            return Err(ApiError::Unauthenticated(
                "the refresh token is unknown, expired or ended",
            ));
        }
        Err(RefreshError::Reused) => {
            tracing::warn!("a spent refresh token was presented: its session has ended");
            return Err(ApiError::Unauthenticated(
                "the refresh token was already used; its session has ended",
            ));
        }
        Err(RefreshError::NoAccount) => {
            return Err(ApiError::Unauthenticated("the account no longer exists"));
        }
        Err(RefreshError::TenantNotActive {
            status: Some(TenantStatus::Suspended),
        }) => {
            return Err(ApiError::Forbidden("the tenant is suspended"));
        }
        Err(RefreshError::TenantNotActive { .. }) => {
            return Err(ApiError::Unauthenticated("the tenant is not registered"));
        }
        Err(RefreshError::Database(error)) => return Err(error.into()),
    };
    let subject = match &continued.tenant {
        None => {
            let row = sqlx::query!(
                "SELECT display_name FROM platform_admins WHERE user_id = $1",
                continued.user
            )
            .fetch_optional(app.store.pool())
            .await?
            .ok_or(ApiError::Unauthenticated("the account no longer exists"))?;
            Subject {
                user_id: continued.user,
                display_name: row.display_name,
                tenant: None,
                role: RoleName::PLATFORM_ADMIN.to_owned(),
                session: Some(continued.next.session),
            }
        }
        Some(tenant_id) => {
            // Active: the session's refresh read the tenant's row before spending anything.
            let tenant = TenantId::parse(tenant_id.as_str()).map_err(ApiError::internal)?;
            let mut tx = app.store.begin(&tenant).await?;
            let row = sqlx::query!(
                "SELECT display_name, role, active FROM users WHERE tenant_id = $1 AND user_id = $2",
                tenant.as_str(),
                continued.user
            )
            .fetch_optional(tx.connection())
            .await?;
            tx.commit().await?;
            let row = row.ok_or(ApiError::Unauthenticated("the account no longer exists"))?;
            if !row.active {
                return Err(ApiError::Forbidden("the account is deactivated"));
            }
            Subject {
                user_id: continued.user,
                display_name: row.display_name,
                tenant: Some(tenant.to_string()),
                role: row.role,
                session: Some(continued.next.session),
            }
        }
    };
    Ok(axum::Json(TokenResponse::issue(
        &app,
        &subject,
        continued.next,
    )?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeInput {
    pub old_password: String,
    /// 12 to 128 characters.
    #[schema(min_length = 12, max_length = 128)]
    pub new_password: String,
}

/// Changes the caller's own password (the old one required). Every session of theirs ends,
/// this one included: log in again with the new password.
#[utoipa::path(
    post, path = "/v1/auth/password", tag = "auth", request_body = PasswordChangeInput,
    responses(
        (status = 204, description = "Changed; every session has ended"),
        (status = 422, description = "The old password is wrong, or the new one too weak", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn change_password(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    caller: Caller,
    body: ValidJson<PasswordChangeInput>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.own_tenant()?.clone();
    let input = body.value;
    // Guessing the old password here is guessing a login: the same failure budget.
    let account = format!("{tenant}/{}", caller.user_id);
    app.limits.login_allowed(client.ip(), &account)?;
    password::check_strength(&input.new_password)
        .map_err(|reason| ApiError::Validation(vec![FieldError::new("new_password", reason)]))?;
    let mut tx = app.store.begin(&tenant).await?;
    let current = sqlx::query_scalar!(
        "SELECT password_hash FROM users WHERE tenant_id = $1 AND user_id = $2",
        tenant.as_str(),
        caller.user_id
    )
    .fetch_optional(tx.connection())
    .await?
    .ok_or(ApiError::Unauthenticated("the account no longer exists"))?;
    tx.commit().await?;
    if !password::verify(current, input.old_password).await? {
        app.limits.login_failed(client.ip(), &account);
        return Err(ApiError::Validation(vec![FieldError::new(
            "old_password",
            "is not the current password",
        )]));
    }
    let hash = password::hash(input.new_password).await?;
    crate::users::handlers::set_password(&app, &caller, &tenant, caller.user_id, hash, false)
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
