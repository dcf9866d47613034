//! Setting a tenant up, for a platform admin (`POST /v1/tenants`) and by self-service
//! sign-up (`POST /v1/signup`, when `CHRONICLE_SIGNUP=open`): the saga here, sign-up's
//! HTTP in [`http`], the taking back of unfinished set-ups in [`housekeeping`].
//!
//! A tenant is made in several places: its registry row, its first admin, their events,
//! and its filtered aliases in Elasticsearch. The database part is one transaction; the
//! aliases are not in it. So a tenant is registered `pending` (nobody can log in to it, it
//! is as if it did not exist), then its aliases are made, then it is activated:
//!
//! 1. registration: the `pending` row (with the fingerprint of the request that started it),
//!    the admin, `TenantRegistered { pending }` and `UserRegistered`, in one transaction;
//! 2. the tenant's aliases (idempotent);
//! 3. activation: `TenantActivated` and the row `active`, in one transaction with the
//!    `Idempotency-Key`'s record of the final response.
//!
//! A failure after step 1 answers 503 with `Retry-After`. Retrying the same request (same
//! body; same key if one was sent) resumes at step 2 and completes; a different request for
//! the pending id is a 409. A tenant left pending (its requester gave up) is taken back
//! after `CHRONICLE_SIGNUP_PENDING_TIMEOUT_SECS` by the housekeeping: `TenantSignupAbandoned`,
//! its rows deleted, its id free again. That is the compensation: nothing half-made can log
//! in, and nothing half-made stays.

mod housekeeping;
mod http;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use event_store::{
    EventMetadata, ExpectedVersion, NewEvent, StreamId, TenantId, TenantTransaction,
};
use schemas::{TenantEvent, TenantName};

pub use housekeeping::abandon_stale;
pub use http::{SignupInput, router};

use super::aggregate::{TenantCommand, TenantError, TenantState, decide, tenant_stream};
use super::handlers::AdminInput;
use super::registry::Tenant;
use crate::auth::{Caller, password};
use crate::commands::{self, Command, Landed};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::telemetry::RequestContext;
use crate::users::UserInput;
use crate::users::commands::RegisterUser;

/// A tenant to set up, checked.
#[derive(Debug)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: TenantName,
    pub admin: crate::users::NewUser,
}

impl NewTenant {
    /// Checks every field at once; `id` may come from elsewhere than the body (sign-up by
    /// host).
    pub fn validate(id: Option<String>, name: &str, admin: AdminInput) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let id = match id {
            Some(id) => TenantId::parse(id)
                .map_err(|e| errors.push(FieldError::new("id", e)))
                .ok(),
            None => {
                errors.push(FieldError::new(
                    "id",
                    "is required (in the body, by host or by X-Tenant-ID)",
                ));
                None
            }
        };
        let name = TenantName::parse(name)
            .map_err(|e| errors.push(FieldError::new("name", e)))
            .ok();
        let admin = UserInput {
            username: admin.username,
            password: admin.password,
            display_name: admin.display_name,
            role: "admin".to_owned(),
        }
        .validate("admin.")
        .map_err(|e| errors.extend(e))
        .ok();
        match (id, name, admin) {
            (Some(id), Some(name), Some(admin)) => Ok(Self { id, name, admin }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// The three steps; the response of the last, or of an earlier request with the same key.
pub async fn set_up(
    app: &AppState,
    actor: &Caller,
    idempotency: Idempotency,
    fingerprint: String,
    tenant: NewTenant,
) -> Result<Response, ApiError> {
    if let Some(replay) = idempotency.replay_now(app.store.pool()).await? {
        return Ok(replay.into_response());
    }
    let id = tenant.id.clone();
    let password_hash = password::hash(tenant.admin.password.clone()).await?;
    let admin = RegisterUser::new(tenant.admin, password_hash);
    let admin_id = admin.user_id();
    let register = RegisterTenant {
        id: id.clone(),
        name: tenant.name,
        admin,
        fingerprint,
        started_here: false,
    };
    commands::execute(
        app,
        actor,
        &id,
        Idempotency::none(Scope::Platform),
        register,
    )
    .await?;

    if let Err(error) =
        read_model::indices::ensure_tenant_aliases(&app.es, &app.config.index_prefix, id.as_str())
            .await
    {
        tracing::warn!(tenant_id = %id, %error, "the tenant's aliases could not be made; it stays pending");
        return Err(ApiError::Unavailable {
            what: "the tenant is registered but not set up yet; send the same request again to finish",
            retry_after_secs: 5,
        });
    }

    let system = Caller::system(actor);
    let response = commands::execute(
        app,
        &system,
        &id,
        idempotency,
        ActivateTenant {
            id: id.clone(),
            created_at: None,
        },
    )
    .await?;
    // This instance knows at once; the others on the notifications (which bring it here
    // too, should this reload fail: the tenant is set up either way, so no error).
    if let Err(error) = app.tenants.reload_one(app.store.pool(), id.as_str()).await {
        tracing::warn!(%error, tenant_id = %id, "reloading the new tenant failed");
    }
    if let Err(error) = app
        .users
        .reload_one(app.store.pool(), &format!("{id}/{admin_id}"))
        .await
    {
        tracing::warn!(%error, tenant_id = %id, "reloading the new admin failed");
    }
    tracing::info!(tenant_id = %id, "tenant set up");
    Ok(response)
}

/// A tenant's domain error as the API answers it, naming the tenant.
pub(crate) fn tenant_error(id: &TenantId, error: TenantError) -> ApiError {
    match error {
        TenantError::NotFound => ApiError::NotFound,
        TenantError::AlreadyExists => ApiError::Conflict(format!("a tenant `{id}` already exists")),
        TenantError::StillSettingUp => {
            ApiError::Conflict(format!("the tenant `{id}` is still being set up"))
        }
        TenantError::Abandoned => {
            ApiError::Conflict(format!("the set-up of `{id}` was abandoned; start again"))
        }
        TenantError::SetUpByAnother => ApiError::Conflict(format!(
            "a tenant `{id}` is being set up by another request"
        )),
    }
}

/// Step 1: the pending tenant, its first admin, their events; or, for a retry of the
/// request that started it, nothing (it resumes).
#[derive(Debug)]
struct RegisterTenant {
    id: TenantId,
    name: TenantName,
    admin: RegisterUser,
    fingerprint: String,
    /// Read in the transaction: a pending set-up of this id was started by this request.
    started_here: bool,
}

impl Command for RegisterTenant {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.id)
    }

    async fn read_facts(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        state: Option<&TenantState>,
        _caller: &Caller,
    ) -> Result<(), ApiError> {
        if state.is_some() {
            // Locked: a concurrent retry waits here until this one has committed.
            let started_by = sqlx::query_scalar!(
                "SELECT setup_fingerprint FROM tenants WHERE id = $1 AND status = 'pending' FOR UPDATE",
                self.id.as_str()
            )
            .fetch_optional(tx.connection())
            .await?
            .flatten();
            self.started_here = started_by.as_deref() == Some(self.fingerprint.as_str());
        }
        Ok(())
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        let command = TenantCommand::Register {
            name: self.name.clone(),
            started_here: self.started_here,
        };
        decide(state, command).map_err(|error| tenant_error(&self.id, error))
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        if landed.events.is_empty() {
            // The request that started the set-up, again: it resumes (decided above).
            return Ok(());
        }
        let inserted = sqlx::query!(
            r#"INSERT INTO tenants (id, name, status, setup_fingerprint) VALUES ($1, $2, 'pending', $3)
               ON CONFLICT (id) DO NOTHING"#,
            self.id.as_str(),
            self.name.as_str(),
            self.fingerprint
        )
        .execute(tx.connection())
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(tenant_error(&self.id, TenantError::AlreadyExists));
        }
        self.admin.insert_row(tx).await?;
        let (stream, event) = self.admin.new_event();
        tx.append_to_stream(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(&event, landed.caller.event_metadata())],
        )
        .await?;
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        Ok(StoredResponse::json(
            StatusCode::ACCEPTED,
            Vec::new(),
            &serde_json::json!({}),
        ))
    }
}

/// Step 3: the tenant becomes active.
#[derive(Debug)]
struct ActivateTenant {
    id: TenantId,
    created_at: Option<DateTime<Utc>>,
}

impl Command for ActivateTenant {
    type Aggregate = TenantState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        tenant_stream(&self.id)
    }

    fn decide(&mut self, state: Option<&TenantState>) -> Result<Vec<TenantEvent>, ApiError> {
        decide(state, TenantCommand::Activate).map_err(|error| tenant_error(&self.id, error))
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _landed: &Landed<'_, TenantState>,
    ) -> Result<(), ApiError> {
        let row = sqlx::query!(
            "UPDATE tenants SET status = CASE WHEN status = 'pending' THEN 'active' ELSE status END,
                 setup_fingerprint = NULL, updated_at = now()
             WHERE id = $1 RETURNING created_at",
            self.id.as_str()
        )
        .fetch_optional(tx.connection())
        .await?
        .ok_or(ApiError::NotFound)?;
        self.created_at = Some(row.created_at);
        Ok(())
    }

    fn respond(&self, landed: &Landed<'_, TenantState>) -> Result<StoredResponse, ApiError> {
        let state = landed.state.ok_or(ApiError::NotFound)?;
        let tenant = Tenant::of(&self.id, state, self.created_at);
        Ok(StoredResponse::json(
            StatusCode::CREATED,
            vec![("location".to_owned(), format!("/v1/tenants/{}", self.id))],
            &tenant,
        ))
    }
}

impl Caller {
    /// Chronicle itself, finishing what `actor`'s request started (same request id).
    pub fn system(actor: &Caller) -> Caller {
        Caller {
            user_id: EventMetadata::SYSTEM_ACTOR,
            name: "Chronicle".to_owned(),
            ..actor.clone()
        }
    }

    /// Chronicle itself, in housekeeping (no request).
    pub fn system_alone() -> Caller {
        let context = RequestContext::default();
        Caller {
            user_id: EventMetadata::SYSTEM_ACTOR,
            ..Caller::self_service(
                EventMetadata::SYSTEM_ACTOR,
                "Chronicle".to_owned(),
                &context,
            )
        }
    }
}
