//! The reads, served by the projections: one customer from the PostgreSQL read model
//! (optionally waiting for a version: read-your-writes), the list with a cursor, search,
//! history and the audit log from Elasticsearch. Every one is scoped to the caller's
//! tenant by the projector's queries.

// utoipa's `IntoParams` expansion qualifies the params types again.
#![allow(unused_qualifications)]

use std::time::Duration;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use read_model::audit::AuditFilter;
use schemas::Permission;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::extract::ValidQuery;
use crate::problem::{ApiError, FieldError, Problem};
use crate::state::AppState;

use super::resources::{AuditEntry, CustomerResource, HistoryEntry};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_customers))
        .routes(routes!(search_customers))
        .routes(routes!(get_customer))
        .routes(routes!(customer_history))
        .routes(routes!(audit_log))
}

/// The longest `?wait_ms` for `?min_version`, in milliseconds.
const MAX_WAIT_MS: u64 = 30_000;

/// The longest value of a parameter that filters on a keyword (`tag`, `actor`,
/// `event_type`), in characters: the indices keep no longer keyword (`ignore_above` in
/// `infra/elasticsearch/`), so a longer one could match nothing, and Elasticsearch refuses
/// a term over 32766 bytes outright.
const MAX_TERM_CHARS: usize = 1024;

/// `value` if it is short enough to be a keyword the indices keep; 422 naming `field`
/// otherwise.
fn term(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if value.chars().count() > MAX_TERM_CHARS => {
            Err(ApiError::Validation(vec![FieldError::new(
                field,
                format!("must be at most {MAX_TERM_CHARS} characters"),
            )]))
        }
        value => Ok(value),
    }
}

fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(20),
        Some(limit @ 1..=100) => Ok(limit),
        Some(_) => Err(ApiError::Validation(vec![FieldError::new(
            "limit",
            "must be between 1 and 100",
        )])),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// Wait until the read model has reached this version (read-your-writes).
    pub min_version: Option<u64>,
    /// How long to wait for `min_version`, in milliseconds (default 5000, at most 30000).
    #[param(maximum = 30000)] // MAX_WAIT_MS
    pub wait_ms: Option<u64>,
}

/// One customer, from the read model.
#[utoipa::path(
    get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = Uuid, Path), GetParams),
    responses(
        (status = 200, body = CustomerResource,
         headers(("ETag" = String, description = "The version, in quotes: send it as `If-Match`"))),
        (status = 404, body = Problem),
        (status = 429, description = "Too many reads of the tenant wait for min_version", body = Problem),
        (status = 504, description = "min_version not reached in time", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn get_customer(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidQuery(params): ValidQuery<GetParams>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let tenant = caller.require(Permission::CustomersRead)?.clone();
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let wait_ms = params.wait_ms.unwrap_or(5_000);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::Validation(vec![FieldError::new(
            "wait_ms",
            format!("must be at most {MAX_WAIT_MS}"),
        )]));
    }
    let Some(min) = params.min_version else {
        return read_model::customers::find(&app.store, &tenant, id)
            .await?
            .map(with_etag)
            .ok_or(ApiError::NotFound);
    };
    let wait = Duration::from_millis(wait_ms);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read, so progress noted in between is not missed.
    let mut progress = app.version_waits.wait(tenant.as_str(), id)?;
    loop {
        if let Some(customer) = read_model::customers::find(&app.store, &tenant, id).await?
            && customer.version >= min
        {
            return Ok(with_etag(customer));
        }
        if tokio::time::timeout_at(deadline, progress.woken())
            .await
            .is_err()
        {
            return Err(ApiError::Timeout(
                "the read model has not reached min_version yet; retry",
            ));
        }
    }

    fn with_etag(customer: read_model::customers::CustomerRecord) -> axum::response::Response {
        let etag = format!("\"{}\"", customer.version);
        (
            [(axum::http::header::ETAG, etag)],
            axum::Json(CustomerResource::from(customer)),
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Archived customers too (default: only active ones).
    #[serde(default)]
    pub include_archived: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerPage {
    pub items: Vec<CustomerResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The tenant's customers in creation order; archived ones only on request.
#[utoipa::path(
    get, path = "/v1/customers", tag = "customers", params(ListParams),
    responses((status = 200, body = CustomerPage)),
    security(("bearer" = []))
)]
pub async fn list_customers(
    State(app): State<AppState>,
    caller: Caller,
    ValidQuery(params): ValidQuery<ListParams>,
) -> Result<axum::Json<CustomerPage>, ApiError> {
    let tenant = caller.require(Permission::CustomersRead)?.clone();
    let limit = page_size(params.limit)?;
    let after = params
        .cursor
        .map(|cursor| Uuid::parse_str(&cursor))
        .transpose()
        .map_err(|_| {
            ApiError::Validation(vec![FieldError::new(
                "cursor",
                "is not a cursor this API returned",
            )])
        })?;
    let items: Vec<CustomerResource> =
        read_model::customers::page(&app.store, &tenant, limit, after, params.include_archived)
            .await?
            .into_iter()
            .map(CustomerResource::from)
            .collect();
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(axum::Json(CustomerPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words to find in name, email, phone, address and tags; typos and accents forgiven.
    /// At most 200 characters; none: every customer.
    #[serde(default)]
    #[param(max_length = 200)]
    pub q: String,
    /// Only customers with this tag.
    #[param(max_length = 1024)] // MAX_TERM_CHARS
    pub tag: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Archived customers too (default: only active ones).
    #[serde(default)]
    pub include_archived: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub items: Vec<CustomerResource>,
    pub total: u64,
}

/// Full-text search over the tenant's customers.
#[utoipa::path(
    get, path = "/v1/customers/search", tag = "customers", params(SearchParams),
    responses((status = 200, body = SearchResult)),
    security(("bearer" = []))
)]
pub async fn search_customers(
    State(app): State<AppState>,
    caller: Caller,
    ValidQuery(params): ValidQuery<SearchParams>,
) -> Result<axum::Json<SearchResult>, ApiError> {
    let tenant = caller.require(Permission::CustomersRead)?.clone();
    let limit = page_size(params.limit)?;
    if params.q.chars().count() > 200 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "q",
            "must be at most 200 characters",
        )]));
    }
    let (items, total) = read_model::search::customers(
        &app.es,
        &app.config.index_prefix,
        &tenant,
        &params.q,
        term("tag", params.tag)?.as_deref(),
        limit,
        params.include_archived,
    )
    .await?;
    let items = items.into_iter().map(CustomerResource::from).collect();
    Ok(axum::Json(SearchResult { items, total }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryEntry>,
}

/// A customer's versions, oldest first, with each changed field's old and new value.
#[utoipa::path(
    get, path = "/v1/customers/{id}/history", tag = "customers", params(("id" = Uuid, Path)),
    responses((status = 200, body = HistoryPage), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn customer_history(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<HistoryPage>, ApiError> {
    let tenant = caller.require(Permission::CustomersRead)?.clone();
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound)?;
    let items: Vec<HistoryEntry> =
        read_model::history::of_customer(&app.es, &app.config.index_prefix, &tenant, id)
            .await?
            .into_iter()
            .map(HistoryEntry::from)
            .collect();
    if items.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(axum::Json(HistoryPage { items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// RFC 3339 time, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339 time, inclusive.
    pub to: Option<DateTime<Utc>>,
    /// A user id or display name.
    #[param(max_length = 1024)] // MAX_TERM_CHARS
    pub actor: Option<String>,
    /// e.g. `CustomerRegistered`.
    #[param(max_length = 1024)] // MAX_TERM_CHARS
    pub event_type: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// Every event of the tenant: who, when, what, with which request (tenant admins).
#[utoipa::path(
    get, path = "/v1/audit", tag = "customers", params(AuditParams),
    responses((status = 200, body = AuditPage)),
    security(("bearer" = []))
)]
pub async fn audit_log(
    State(app): State<AppState>,
    caller: Caller,
    ValidQuery(params): ValidQuery<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let tenant = caller.require(Permission::AuditRead)?.clone();
    let limit = page_size(params.limit)?;
    let after = params
        .cursor
        .map(|cursor| {
            // A global position, which Elasticsearch keeps as a signed 64-bit number: a
            // bigger one was not returned by this API (and Elasticsearch would refuse it).
            cursor
                .parse::<i64>()
                .ok()
                .and_then(|position| u64::try_from(position).ok())
                .ok_or_else(|| {
                    ApiError::Validation(vec![FieldError::new(
                        "cursor",
                        "is not a cursor this API returned",
                    )])
                })
        })
        .transpose()?;
    let filter = AuditFilter {
        from: params.from,
        to: params.to,
        actor: term("actor", params.actor)?,
        event_type: term("event_type", params.event_type)?,
    };
    let (items, next) = read_model::audit::page(
        &app.es,
        &app.config.index_prefix,
        &tenant,
        &filter,
        limit,
        after,
    )
    .await?;
    Ok(axum::Json(AuditPage {
        items: items.into_iter().map(AuditEntry::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}
