//! [`Caller`]: the authenticated principal of a request, and what they may do.
//!
//! The tenant of a request is the token's, never the client's: an `X-Tenant-ID` header or
//! a tenant host (`<tenant>.<base domain>`) may only repeat it (403 otherwise), and a token
//! whose tenant is unknown or not active is refused with 403. The user's role, whether
//! they are still active, and the permissions of their role come from the in-memory
//! directory and role registry, not from the token: a deactivation, a demotion or a
//! change of a role's permissions applies to tokens already issued, within a second, on
//! every instance. No database call either way.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use event_store::{EventMetadata, TenantId};
use schemas::{Permission, Permissions, RoleName};
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::AppState;
use crate::telemetry::RequestContext;
use crate::tenancy::{TenantStatus, host};

#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub name: String,
    /// `None` for platform admins.
    pub tenant: Option<TenantId>,
    /// The user's current role (`platform_admin` for platform admins).
    pub role: RoleName,
    /// What the role allows now (none for platform admins: they act on tenants, not in them).
    pub permissions: Permissions,
    pub jti: Uuid,
    /// The login session (refresh token family) the token belongs to, if any.
    pub session: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub request_id: String,
    pub correlation_id: String,
}

impl Caller {
    /// The caller's tenant if they hold `permission` there; 403 otherwise.
    pub fn require(&self, permission: Permission) -> Result<&TenantId, ApiError> {
        match &self.tenant {
            Some(tenant) if self.permissions.contains(permission) => Ok(tenant),
            Some(_) => Err(ApiError::MissingPermission(permission)),
            None => Err(ApiError::Forbidden(
                "platform admins act on tenants, not inside them",
            )),
        }
    }

    /// The caller's tenant, whatever their permissions (acting on oneself).
    pub fn own_tenant(&self) -> Result<&TenantId, ApiError> {
        self.tenant.as_ref().ok_or(ApiError::Forbidden(
            "platform admins act on tenants, not inside them",
        ))
    }

    pub fn is_platform_admin(&self) -> bool {
        self.tenant.is_none() && self.role.as_str() == RoleName::PLATFORM_ADMIN
    }

    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        if self.is_platform_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only platform admins may do this"))
        }
    }

    /// Metadata for the events this request causes.
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata {
            actor_id: self.user_id,
            actor_name: self.name.clone(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.request_id.clone(),
        }
    }

    /// The acting principal of a request that has no token (sign-up): the user it makes,
    /// acting on their own behalf, so the audit log names them.
    pub fn self_service(user_id: Uuid, name: String, context: &RequestContext) -> Self {
        Self {
            user_id,
            name,
            tenant: None,
            role: RoleName::admin(),
            permissions: Permissions::NONE,
            jti: Uuid::nil(),
            session: None,
            expires_at: Utc::now(),
            request_id: context.request_id.clone(),
            correlation_id: context.correlation_id.clone(),
        }
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthenticated(
            "send `Authorization: Bearer <token>`",
        ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        let claims = app.tokens.verify(token).map_err(|error| {
            tracing::info!(%error, "token refused");
            ApiError::Unauthenticated("the token is invalid or expired")
        })?;
        // Without a live change feed a revocation, a suspension or a deactivation may have
        // been missed: refuse rather than trust lists that may be stale (fail closed).
        if !app.ready.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ApiError::Unavailable {
                what: "the revocation list and tenant registry are being reloaded",
                retry_after_secs: 1,
            });
        }
        if app.revocations.is_revoked(claims.jti) {
            return Err(ApiError::Unauthenticated("the token has been revoked"));
        }

        let platform = claims.role == RoleName::PLATFORM_ADMIN;
        let tenant = match (&claims.tenant, platform) {
            (None, true) => None,
            (Some(tenant), false) => Some(tenant.clone()),
            _ => {
                return Err(ApiError::Unauthenticated(
                    "the token's tenant and role do not fit together",
                ));
            }
        };
        let named = host::tenant_named_by_request(&parts.headers, &app.config.base_domain)
            .map_err(ApiError::BadHeader)?;
        if let Some(named) = named
            && Some(named.as_str()) != tenant.as_deref()
        {
            return Err(ApiError::Forbidden(
                "the request names another tenant than the token's",
            ));
        }

        if tenant.is_none()
            && claims
                .sid
                .is_some_and(|session| app.revocations.is_session_revoked(session))
        {
            return Err(ApiError::Unauthenticated("the session has ended"));
        }
        let (tenant, role, permissions) = match tenant {
            None => (
                None,
                RoleName::from(RoleName::PLATFORM_ADMIN.to_owned()),
                Permissions::NONE,
            ),
            Some(tenant) => {
                match app.tenants.get(&tenant) {
                    Some(registered) if registered.status == TenantStatus::Active => {}
                    Some(registered) if registered.status == TenantStatus::Suspended => {
                        return Err(ApiError::Forbidden("the tenant is suspended"));
                    }
                    _ => return Err(ApiError::Forbidden("the tenant is not registered")),
                }
                // After the tenant's status: a suspension (which also ends the sessions)
                // answers 403, as the contract says, not 401.
                if claims
                    .sid
                    .is_some_and(|session| app.revocations.is_session_revoked(session))
                {
                    return Err(ApiError::Unauthenticated("the session has ended"));
                }
                let access = app
                    .users
                    .get(claims.sub)
                    .filter(|access| access.tenant == tenant)
                    .ok_or(ApiError::Unauthenticated("the user no longer exists"))?;
                if !access.active {
                    return Err(ApiError::Unauthenticated("the user is deactivated"));
                }
                if access
                    .sessions_valid_after
                    .is_some_and(|after| claims.iat < after.timestamp())
                {
                    return Err(ApiError::Unauthenticated(
                        "the session has ended (the password changed); log in again",
                    ));
                }
                let permissions = app
                    .roles
                    .permissions(&tenant, &access.role)
                    .unwrap_or(Permissions::NONE);
                let tenant = TenantId::parse(tenant).map_err(ApiError::internal)?;
                (Some(tenant), access.role, permissions)
            }
        };

        let context = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        context.identify(tenant.as_ref().map(TenantId::as_str), claims.sub);
        Ok(Self {
            user_id: claims.sub,
            name: claims.name,
            tenant,
            role,
            permissions,
            jti: claims.jti,
            session: claims.sid,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now),
            request_id: context.request_id.clone(),
            correlation_id: context.correlation_id,
        })
    }
}
