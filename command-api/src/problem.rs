//! Every error the API returns, mapped once to an RFC 9457 problem response
//! (`application/problem+json`). Server errors log their cause and tell the client nothing
//! internal.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `address.country`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// A header the client sent is malformed; named in `errors`.
    #[error("malformed header {}", .0.field)]
    BadHeader(FieldError),
    #[error("authentication required")]
    Unauthenticated(&'static str),
    /// The same answer for an unknown tenant, an unknown user and a wrong password.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The caller's role lacks a permission the action needs.
    #[error("missing permission {0}")]
    MissingPermission(schemas::Permission),
    /// Granting permissions the caller does not hold.
    #[error("cannot grant permissions one does not hold")]
    CannotGrant(Vec<schemas::Permission>),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("If-Match required")]
    PreconditionRequired,
    #[error("version mismatch: the resource is at version {current}")]
    PreconditionFailed { current: u64 },
    #[error("request body too large")]
    PayloadTooLarge,
    /// The events a command would record are bigger than the store takes.
    #[error("event too large: {size} bytes, at most {max}")]
    EventTooLarge { size: usize, max: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("timed out")]
    Timeout(&'static str),
    /// The client took too long to send its request.
    #[error("request timeout")]
    RequestTimeout,
    /// Overloaded or a dependency away for a moment: the client should retry, and is told
    /// when. Never a 500: nothing is wrong with the request or with Chronicle's code.
    #[error("unavailable: {what}")]
    Unavailable {
        what: &'static str,
        retry_after_secs: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::BadHeader(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::MissingPermission(_) | Self::CannotGrant(_) => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge | Self::EventTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadRequest(detail) => detail.clone(),
            Self::BadHeader(error) => format!("the {} header is invalid; see errors", error.field),
            Self::Unauthenticated(why) => (*why).to_owned(),
            Self::InvalidCredentials => "tenant, username or password is wrong".to_owned(),
            Self::Forbidden(why) => (*why).to_owned(),
            Self::MissingPermission(permission) => {
                format!("this needs the permission `{permission}`, which your role does not have")
            }
            Self::CannotGrant(permissions) => format!(
                "you cannot grant what you do not hold: {}",
                permissions
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::NotFound => "no such resource".to_owned(),
            Self::MethodNotAllowed => "this resource does not support the method".to_owned(),
            Self::Conflict(detail) => detail.clone(),
            Self::PreconditionRequired => {
                "send If-Match with the version you read (e.g. If-Match: \"3\")".to_owned()
            }
            Self::PreconditionFailed { current } => {
                format!("the resource changed: it is at version {current}; read it again and retry")
            }
            Self::PayloadTooLarge => "the request body exceeds 1 MiB".to_owned(),
            Self::EventTooLarge { size, max } => format!(
                "the change would record an event of {size} bytes; an event holds at most {max}"
            ),
            Self::UnsupportedMediaType => "send the body as application/json".to_owned(),
            Self::Validation(_) => "the request has invalid fields; see errors".to_owned(),
            Self::IdempotencyKeyReused => {
                "this Idempotency-Key was used with another request; use a new key".to_owned()
            }
            Self::RateLimited { retry_after_secs } => {
                format!("too many requests; retry in {retry_after_secs} s")
            }
            Self::Timeout(what) => (*what).to_owned(),
            Self::RequestTimeout => "the request was not received in time".to_owned(),
            Self::Unavailable {
                what,
                retry_after_secs,
            } => format!("{what}; retry in {retry_after_secs} s"),
            Self::Internal(_) => "something went wrong on our side; it has been logged".to_owned(),
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::BadHeader(_) => "malformed-request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::InvalidCredentials => "invalid-credentials",
            Self::Forbidden(_) => "forbidden",
            Self::MissingPermission(_) => "missing-permission",
            Self::CannotGrant(_) => "cannot-grant",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::PreconditionRequired => "precondition-required",
            Self::PreconditionFailed { .. } => "version-mismatch",
            Self::PayloadTooLarge | Self::EventTooLarge { .. } => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Validation(_) => "validation",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::RateLimited { .. } => "rate-limited",
            Self::Timeout(_) => "timeout",
            Self::RequestTimeout => "request-timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<event_store::EventStoreError> for ApiError {
    fn from(error: event_store::EventStoreError) -> Self {
        match error {
            event_store::EventStoreError::Database(error) => error.into(),
            event_store::EventStoreError::EventTooLarge { size, max } => {
                Self::EventTooLarge { size, max }
            }
            other => Self::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// A database that is saturated or away for a moment is a 503 to retry, logged as a
    /// warning; anything else is a server error.
    fn from(error: sqlx::Error) -> Self {
        match event_store::transience(&error) {
            Some(what) => {
                tracing::warn!(%error, "database unavailable; answering 503");
                Self::Unavailable {
                    what,
                    retry_after_secs: 1,
                }
            }
            None => Self::internal(error),
        }
    }
}

impl From<read_model::ReadError> for ApiError {
    fn from(error: read_model::ReadError) -> Self {
        match error {
            read_model::ReadError::Database(error) => error.into(),
            read_model::ReadError::Sql(error) => error.into(),
            read_model::ReadError::Elasticsearch(error) if error.is_transient() => {
                tracing::warn!(%error, "search unavailable; answering 503");
                Self::Unavailable {
                    what: "search is unavailable for a moment",
                    retry_after_secs: 1,
                }
            }
            read_model::ReadError::Elasticsearch(error) if error.is_missing_index() => {
                tracing::warn!(%error, "search indices missing; answering 503");
                Self::Unavailable {
                    what: "the search indices are not set up yet",
                    retry_after_secs: 5,
                }
            }
            read_model::ReadError::Elasticsearch(error) => Self::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let retry_after = match &self {
            Self::RateLimited { retry_after_secs }
            | Self::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let problem = Problem {
            problem_type: format!("https://chronicle.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            instance: None,
            errors: match self {
                Self::Validation(errors) => errors,
                Self::BadHeader(error) => vec![error],
                _ => Vec::new(),
            },
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
