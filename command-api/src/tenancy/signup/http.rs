//! `POST /v1/signup`: self-service sign-up, open only when `CHRONICLE_SIGNUP=open`,
//! rate-limited per client network; the set-up itself is the saga of `super`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use event_store::TenantId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{NewTenant, set_up};
use crate::auth::Caller;
use crate::auth::login::named_tenant;
use crate::extract::{IdempotencyKey, ValidJson};
use crate::idempotency::{Idempotency, Scope};
use crate::openapi::fields;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::telemetry::RequestContext;
use crate::tenancy::Tenant;
use crate::tenancy::handlers::AdminInput;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(signup))
}

/// `POST /v1/signup`: the tenant's id in the body, or named by host or `X-Tenant-ID`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupInput {
    /// A lowercase slug: `^[a-z][a-z0-9-]{1,62}$`; may be left to the host
    /// (`<id>.<base domain>`) or `X-Tenant-ID`.
    #[serde(default)]
    #[schema(schema_with = fields::optional_tenant_id)]
    pub id: Option<String>,
    /// 1 to 200 characters.
    #[schema(schema_with = fields::tenant_name)]
    pub name: String,
    /// The tenant's first admin.
    pub admin: AdminInput,
}

/// Signs up: a new tenant and its first admin, who can log in at once. Only when sign-up
/// is open (`CHRONICLE_SIGNUP=open`); 404 otherwise.
#[utoipa::path(
    post, path = "/v1/signup", tag = "tenants", request_body = SignupInput,
    params(IdempotencyKey),
    responses(
        (status = 201, body = Tenant,
         headers(("Location" = String, description = "`/v1/tenants/{id}`"))),
        (status = 404, description = "Sign-up is closed", body = Problem),
        (status = 409, description = "A tenant with this id exists, or is being set up by another request", body = Problem),
        (status = 429, description = "Too many sign-ups from this network", body = Problem),
        (status = 503, description = "Registered but not set up yet: send the same request again", body = Problem),
    )
)]
pub async fn signup(
    State(app): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    context: axum::Extension<RequestContext>,
    key: IdempotencyKey,
    body: ValidJson<SignupInput>,
) -> Result<Response, ApiError> {
    if !app.config.signup_open() {
        return Err(ApiError::NotFound);
    }
    app.limits.signup(client.ip())?;
    let input = body.value;
    let id = named_tenant(&app, &headers, input.id.as_deref())?;
    let tenant = NewTenant::validate(id, &input.name, input.admin)?;
    // The admin signing up acts for themselves: the audit log names them.
    let actor = Caller::self_service(
        Uuid::now_v7(),
        tenant.admin.display_name.to_string(),
        &context.0,
    );
    let fingerprint = app.fingerprints.of(
        &Method::POST,
        &format!("/v1/signup/{}", tenant.id),
        &body.raw,
    );
    // Nobody is logged in: keys belong to the tenant asked for, so a retry from anywhere
    // finds its first attempt.
    let idempotency = Idempotency::new(
        Scope::Platform,
        signup_key_owner(&tenant.id),
        key,
        fingerprint.clone(),
    );
    set_up(&app, &actor, idempotency, fingerprint, tenant).await
}

/// Whose `Idempotency-Key`s a sign-up's are: a stable id per requested tenant.
fn signup_key_owner(tenant: &TenantId) -> Uuid {
    let digest = Sha256::digest(format!("chronicle/signup/{tenant}").as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
