//! The customer commands: create, patch (JSON merge patch, `If-Match` required), archive.
//! Each is a [`Command`] run by the one command pipeline; what is here is only what is the
//! customer's own: the stream, the decision, the response.

// utoipa's `IntoParams` expansion qualifies the params type again.
#![allow(unused_qualifications)]

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use event_store::StreamId;
use schemas::{CustomerEvent, DomainEvent, Permission};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{Customer, CustomerCommand, CustomerDetails, CustomerError, decide};
use super::input::{CustomerInput, CustomerPatch, merge_patch};
use crate::auth::Caller;
use crate::commands::{self, Command, Landed, Precondition};
use crate::extract::{IdempotencyKey, IfMatch, ValidJson, ValidQuery};
use crate::idempotency::{Idempotency, Scope, StoredResponse};
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

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
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Registered", body = CommandAccepted,
         headers(("Location" = String, description = "`/v1/customers/{id}`"),
                 ("ETag" = String, description = "The version, in quotes: `\"1\"`"))),
        (status = 429, description = "The tenant's write rate is exceeded", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create_customer(
    State(app): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    body: ValidJson<CustomerInput>,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::CustomersWrite)?.clone();
    let details = body.value.validate()?;
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints
            .of(&Method::POST, "/v1/customers", &body.raw),
    );
    let command = CustomerWrite {
        id: Uuid::now_v7(),
        precondition: Precondition::NewStream,
        change: Some(Change::Register(details)),
    };
    commands::execute(&app, &caller, &tenant, idempotency, command).await
}

/// Changes a customer with a JSON merge patch of the fields of `POST /v1/customers`.
#[utoipa::path(
    patch, path = "/v1/customers/{id}", tag = "customers",
    request_body(content(
        (CustomerPatch = "application/merge-patch+json"),
        (CustomerPatch = "application/json"),
    )),
    params(("id" = Uuid, Path), IfMatch, IdempotencyKey),
    responses(
        (status = 200, description = "Changed (or nothing to change)", body = CommandAccepted,
         headers(("ETag" = String, description = "The version now, in quotes"))),
        (status = 404, body = Problem),
        (status = 409, description = "The customer is archived", body = Problem),
        (status = 412, body = Problem), (status = 428, body = Problem),
        (status = 429, description = "The tenant's write rate is exceeded", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn patch_customer(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    key: IdempotencyKey,
    body: ValidJson<Value>,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Permission::CustomersWrite)?.clone();
    let id = parse_id(&id)?;
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints
            .of(&Method::PATCH, &format!("/v1/customers/{id}"), &body.raw),
    );
    let command = CustomerWrite {
        id,
        precondition: Precondition::Version(expected),
        change: Some(Change::Patch(body.value)),
    };
    commands::execute(&app, &caller, &tenant, idempotency, command).await
}

const DEFAULT_ARCHIVE_REASON: &str = "archived via the API";

/// The longest archive reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ArchiveParams {
    /// Why (1 to 200 characters); recorded in the event. Default: "archived via the API".
    #[param(schema_with = crate::openapi::fields::archive_reason)]
    pub reason: Option<String>,
}

/// Archives a customer: an event, nothing is removed. Archiving twice changes nothing.
#[utoipa::path(
    delete, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = Uuid, Path), IfMatch, IdempotencyKey, ArchiveParams),
    responses(
        (status = 200, description = "Archived (or it already was)", body = CommandAccepted,
         headers(("ETag" = String, description = "The version now, in quotes"))),
        (status = 404, body = Problem), (status = 412, body = Problem), (status = 428, body = Problem),
        (status = 429, description = "The tenant's write rate is exceeded", body = Problem),
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
    let tenant = caller.require(Permission::CustomersArchive)?.clone();
    let id = parse_id(&id)?;
    let reason = match params.reason.as_deref() {
        None => DEFAULT_ARCHIVE_REASON.to_owned(),
        Some(reason) => {
            schemas::values::bounded_text(reason, MAX_REASON_CHARS).map_err(|error| {
                ApiError::Validation(vec![FieldError::new("reason", error.to_string())])
            })?
        }
    };
    // The reason is part of the request: the same key with another reason is another request.
    let idempotency = Idempotency::new(
        Scope::Tenant(tenant.clone()),
        caller.user_id,
        key,
        app.fingerprints.of(
            &Method::DELETE,
            &format!("/v1/customers/{id}"),
            reason.as_bytes(),
        ),
    );
    let command = CustomerWrite {
        id,
        precondition: Precondition::Version(expected),
        change: Some(Change::Archive(reason)),
    };
    commands::execute(&app, &caller, &tenant, idempotency, command).await
}

/// A write to one customer's stream.
struct CustomerWrite {
    id: Uuid,
    precondition: Precondition,
    /// Taken by `decide`.
    change: Option<Change>,
}

enum Change {
    Register(CustomerDetails),
    /// A merge patch, applied to the current details.
    Patch(Value),
    Archive(String),
}

impl Command for CustomerWrite {
    type Aggregate = Customer;

    fn stream(&self) -> StreamId {
        StreamId::for_aggregate(CustomerEvent::AGGREGATE, self.id)
            .expect("a uuid makes a valid stream id")
    }

    fn precondition(&self) -> Precondition {
        self.precondition
    }

    fn decide(&mut self, state: Option<&Customer>) -> Result<Vec<CustomerEvent>, ApiError> {
        let command = match self.change.take().expect("decided once") {
            Change::Register(details) => CustomerCommand::Register(details),
            Change::Patch(patch) => {
                // 404 before the patch is looked at: the customer may be another tenant's.
                let customer = state.ok_or(ApiError::NotFound)?;
                CustomerCommand::Update(merge_patch(&customer.details, &patch)?)
            }
            Change::Archive(reason) => CustomerCommand::Archive { reason },
        };
        decide(state, command).map_err(domain_error)
    }

    fn respond(&self, landed: &Landed<'_, Customer>) -> Result<StoredResponse, ApiError> {
        let (status, mut headers) = match self.precondition {
            Precondition::NewStream => (
                StatusCode::CREATED,
                vec![("location".to_owned(), format!("/v1/customers/{}", self.id))],
            ),
            _ => (StatusCode::OK, Vec::new()),
        };
        headers.push(("etag".to_owned(), format!("\"{}\"", landed.version)));
        Ok(StoredResponse::json(
            status,
            headers,
            &CommandAccepted {
                id: self.id,
                version: landed.version,
            },
        ))
    }
}

/// An id that is not a UUID names no customer: 404, as for any unknown id.
fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

fn domain_error(error: CustomerError) -> ApiError {
    match error {
        CustomerError::NotFound => ApiError::NotFound,
        CustomerError::AlreadyRegistered | CustomerError::Archived => {
            ApiError::Conflict(error.to_string())
        }
    }
}
