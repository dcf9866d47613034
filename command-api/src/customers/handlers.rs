//! The customer commands: create, patch (JSON merge patch, `If-Match` required), archive.
//! Each loads the stream, lets the aggregate decide, and appends with the version it
//! decided on, so a concurrent change is a 412, never a lost update.

// utoipa's `IntoParams` expansion qualifies the params type again.
#![allow(unused_qualifications)]

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use event_store::{EventStoreError, ExpectedVersion, NewEvent, StreamId, TenantTransaction};
use schemas::{CustomerEvent, DomainEvent, Role};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{Customer, CustomerCommand, CustomerError, decide};
use super::input::{CustomerInput, merge_patch};
use crate::app::AppState;
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, IfMatch, ValidJson, ValidQuery};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, FieldError, Problem};

const WRITERS: [Role; 2] = [Role::Admin, Role::Member];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_customer))
        .routes(routes!(patch_customer, archive_customer))
}

/// Where a write landed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    pub id: Uuid,
    /// The customer's version after the write: send it as `If-Match` next time.
    pub version: u64,
}

/// Registers a customer.
#[utoipa::path(
    post, path = "/v1/customers", tag = "customers", request_body = CustomerInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe for 24 hours")),
    responses(
        (status = 201, description = "Registered", body = CommandAccepted,
         headers(("Location" = String), ("ETag" = String))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create_customer(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: ValidJson<CustomerInput>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_with_role(&WRITERS)?.clone();
    app.limits.write(tenant.as_str())?;
    let details = body.value.validate()?;
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        key,
        &Method::POST,
        "/v1/customers",
        &body.raw,
    );

    let mut tx = app.store.begin(&tenant).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let id = Uuid::now_v7();
    let events = decide(None, CustomerCommand::Register(details)).map_err(domain_error)?;
    let appended = tx
        .append_to_stream(
            &stream_of(id)?,
            ExpectedVersion::NoStream,
            new_events(&events, &caller),
        )
        .await?;
    let response = accepted(StatusCode::CREATED, id, appended.next_expected_version);
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    tracing::info!(customer_id = %id, "customer registered");
    Ok(response.into_response())
}

/// Changes a customer with a JSON merge patch of the fields of `POST /v1/customers`.
#[utoipa::path(
    patch, path = "/v1/customers/{id}", tag = "customers", request_body = Object,
    params(
        ("id" = Uuid, Path),
        ("If-Match" = String, Header, description = "The version you read, in quotes: \"3\""),
        ("Idempotency-Key" = Option<String>, Header),
    ),
    responses(
        (status = 200, description = "Changed (or nothing to change)", body = CommandAccepted, headers(("ETag" = String))),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem),
        (status = 422, body = Problem), (status = 428, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn patch_customer(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    key: IdempotencyKey,
    body: ValidJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_with_role(&WRITERS)?.clone();
    app.limits.write(tenant.as_str())?;
    let id = parse_id(&id)?;
    let path = format!("/v1/customers/{id}");
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        key,
        &Method::PATCH,
        &path,
        &body.raw,
    );

    let mut tx = app.store.begin(&tenant).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let stream = stream_of(id)?;
    let (customer, version) = load(&mut tx, &stream).await?;
    if version != expected {
        return Err(ApiError::PreconditionFailed { current: version });
    }
    let wanted = merge_patch(&customer.details, &body.value)?;
    let events = decide(Some(&customer), CustomerCommand::Update(wanted)).map_err(domain_error)?;
    let version = append(&mut tx, &stream, version, &events, &caller).await?;
    let response = accepted(StatusCode::OK, id, version);
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    Ok(response.into_response())
}

const DEFAULT_ARCHIVE_REASON: &str = "archived via the API";

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ArchiveParams {
    /// Why (1 to 200 characters); recorded in the event. Default: "archived via the API".
    pub reason: Option<String>,
}

/// Archives a customer: an event, nothing is removed. Archiving twice changes nothing.
#[utoipa::path(
    delete, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = Uuid, Path), ("If-Match" = String, Header), ("Idempotency-Key" = Option<String>, Header), ArchiveParams),
    responses(
        (status = 200, description = "Archived", body = CommandAccepted, headers(("ETag" = String))),
        (status = 404, body = Problem), (status = 412, body = Problem), (status = 428, body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn archive_customer(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    key: IdempotencyKey,
    ValidQuery(params): ValidQuery<ArchiveParams>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_with_role(&WRITERS)?.clone();
    app.limits.write(tenant.as_str())?;
    let id = parse_id(&id)?;
    let reason = match params.reason.as_deref().map(str::trim) {
        None => DEFAULT_ARCHIVE_REASON.to_owned(),
        Some(reason) if (1..=200).contains(&reason.chars().count()) => reason.to_owned(),
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "reason",
                "must be 1 to 200 characters",
            )]));
        }
    };
    let path = format!("/v1/customers/{id}");
    // The reason is part of the request: the same key with another reason is another request.
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        key,
        &Method::DELETE,
        &path,
        reason.as_bytes(),
    );

    let mut tx = app.store.begin(&tenant).await?;
    if let Some(replay) = idempotency.replay(tx.connection()).await? {
        return Ok(replay.into_response());
    }
    let stream = stream_of(id)?;
    let (customer, version) = load(&mut tx, &stream).await?;
    if version != expected {
        return Err(ApiError::PreconditionFailed { current: version });
    }
    let events =
        decide(Some(&customer), CustomerCommand::Archive { reason }).map_err(domain_error)?;
    let version = append(&mut tx, &stream, version, &events, &caller).await?;
    let response = accepted(StatusCode::OK, id, version);
    idempotency.record(tx.connection(), &response).await?;
    tx.commit().await?;
    Ok(response.into_response())
}

/// An id that is not a UUID names no customer: 404, as for any unknown id.
fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

fn stream_of(id: Uuid) -> Result<StreamId, ApiError> {
    StreamId::for_aggregate(CustomerEvent::AGGREGATE, id).map_err(ApiError::internal)
}

/// The customer and its version; 404 when the stream is empty, which is also what
/// another tenant's customer looks like from here (row-level security hides it).
async fn load(
    tx: &mut TenantTransaction<'_>,
    stream: &StreamId,
) -> Result<(Customer, u64), ApiError> {
    let envelopes = tx.read_stream(stream, 1, u32::MAX).await?;
    let version = envelopes.last().map_or(0, |e| e.stream_version);
    let mut state = None;
    for envelope in envelopes {
        let event = CustomerEvent::decode(
            &envelope.event_type,
            envelope.schema_version,
            envelope.payload,
        )
        .map_err(ApiError::internal)?;
        state = super::aggregate::apply(state, &event);
    }
    state
        .map(|customer| (customer, version))
        .ok_or(ApiError::NotFound)
}

/// Appends at `version` and returns the new version; nothing to append keeps it.
async fn append(
    tx: &mut TenantTransaction<'_>,
    stream: &StreamId,
    version: u64,
    events: &[CustomerEvent],
    caller: &Caller,
) -> Result<u64, ApiError> {
    if events.is_empty() {
        return Ok(version);
    }
    match tx
        .append_to_stream(
            stream,
            ExpectedVersion::Exact(version),
            new_events(events, caller),
        )
        .await
    {
        Ok(appended) => Ok(appended.next_expected_version),
        // Another request changed the customer since we read it.
        Err(EventStoreError::Concurrency { actual, .. }) => {
            Err(ApiError::PreconditionFailed { current: actual })
        }
        Err(error) => Err(error.into()),
    }
}

fn new_events(events: &[CustomerEvent], caller: &Caller) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| NewEvent::new(event, caller.event_metadata()))
        .collect()
}

fn accepted(status: StatusCode, id: Uuid, version: u64) -> StoredResponse {
    let mut headers = vec![("etag".to_owned(), format!("\"{version}\""))];
    if status == StatusCode::CREATED {
        headers.push(("location".to_owned(), format!("/v1/customers/{id}")));
    }
    StoredResponse::json(status, headers, &CommandAccepted { id, version })
}

fn domain_error(error: CustomerError) -> ApiError {
    match error {
        CustomerError::NotFound => ApiError::NotFound,
        CustomerError::AlreadyRegistered | CustomerError::Archived => {
            ApiError::Conflict(error.to_string())
        }
    }
}
