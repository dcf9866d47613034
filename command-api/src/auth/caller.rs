//! [`Caller`]: the authenticated principal of a request.
//!
//! The tenant of a request is the token's, never the client's: an `X-Tenant-ID` header
//! may only repeat it (403 otherwise), and a token whose tenant is unknown or suspended
//! is refused with 403. Both checks use the in-memory registry, no database call.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use event_store::{EventMetadata, TenantId};
use schemas::Role;
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::AppState;
use crate::telemetry::RequestContext;
use crate::tenancy::TenantStatus;

#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub name: String,
    /// `None` for platform admins.
    pub tenant: Option<TenantId>,
    pub role: Role,
    pub jti: Uuid,
    pub expires_at: DateTime<Utc>,
    pub request_id: String,
    pub correlation_id: String,
}

impl Caller {
    /// The caller's tenant if their role is one of `roles`; 403 otherwise.
    pub fn tenant_with_role(&self, roles: &[Role]) -> Result<&TenantId, ApiError> {
        match &self.tenant {
            Some(tenant) if roles.contains(&self.role) => Ok(tenant),
            Some(_) => Err(ApiError::Forbidden("your role does not allow this")),
            None => Err(ApiError::Forbidden(
                "platform admins act on tenants, not inside them",
            )),
        }
    }

    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::PlatformAdmin && self.tenant.is_none() {
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
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
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
            ))?;
        let claims = app.tokens.verify(token).map_err(|error| {
            tracing::info!(%error, "token refused");
            ApiError::Unauthenticated("the token is invalid or expired")
        })?;
        // Without a live change feed a revocation or a suspension may have been missed:
        // refuse rather than trust a list that may be stale (fail closed).
        if !app.ready.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ApiError::Unavailable {
                what: "the revocation list and tenant registry are being reloaded",
                retry_after_secs: 1,
            });
        }
        if app.revocations.is_revoked(claims.jti) {
            return Err(ApiError::Unauthenticated("the token has been revoked"));
        }

        let tenant = match (&claims.tenant, claims.role) {
            (None, Role::PlatformAdmin) => None,
            (Some(tenant), role) if role != Role::PlatformAdmin => Some(tenant.clone()),
            _ => {
                return Err(ApiError::Unauthenticated(
                    "the token's tenant and role do not fit together",
                ));
            }
        };
        let header_tenant = parts
            .headers
            .get("x-tenant-id")
            .map(|v| v.to_str().unwrap_or_default());
        if let Some(header_tenant) = header_tenant
            && Some(header_tenant) != tenant.as_deref()
        {
            return Err(ApiError::Forbidden(
                "X-Tenant-ID differs from the token's tenant",
            ));
        }
        let tenant = match tenant {
            None => None,
            Some(tenant) => match app.tenants.get(&tenant) {
                Some(registered) if registered.status == TenantStatus::Active => {
                    Some(TenantId::parse(tenant).map_err(ApiError::internal)?)
                }
                Some(_) => return Err(ApiError::Forbidden("the tenant is suspended")),
                None => return Err(ApiError::Forbidden("the tenant is not registered")),
            },
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
            role: claims.role,
            jti: claims.jti,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now),
            request_id: context.request_id.clone(),
            correlation_id: context.correlation_id,
        })
    }
}
