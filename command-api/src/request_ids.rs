//! `X-Request-ID` and `X-Correlation-ID` from clients: at most 128 characters of
//! `[A-Za-z0-9._:-]`, checked before anything else sees them. They are copied into every
//! event's metadata, every log line and the audit documents, so an unbounded one would make
//! events too big for Kafka and keywords too long for Elasticsearch (and let a client write
//! arbitrary text into the logs).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::{ApiError, FieldError};

pub const MAX_LEN: usize = 128;

/// The headers checked, as the contract spells them.
const HEADERS: [&str; 2] = ["X-Request-ID", "X-Correlation-ID"];

/// Whether `value` is an id Chronicle accepts from a client.
pub fn is_valid(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The middleware: a 400 naming the header, with a fresh request id of Chronicle's own
/// (the client's is not echoed).
pub async fn check(request: Request, next: Next) -> Response {
    for name in HEADERS {
        if let Some(value) = request.headers().get(name)
            && !is_valid(value.as_bytes())
        {
            let mut response = ApiError::BadHeader(FieldError::new(
                name,
                format!("must be 1 to {MAX_LEN} characters of A-Z, a-z, 0-9, `.`, `_`, `:` or `-`"),
            ))
            .into_response();
            let fresh = uuid::Uuid::now_v7().to_string();
            if let Ok(id) = HeaderValue::from_str(&fresh) {
                response.headers_mut().insert("x-request-id", id);
            }
            tracing::info!(header = name, request_id = %fresh, "refused a malformed id header");
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        for valid in [
            "a",
            "req-1",
            "0190c3b2-7e4f-7c1a-9f00-0a1b2c3d4e5f",
            "span:1.2_3",
        ] {
            assert!(is_valid(valid.as_bytes()), "{valid}");
        }
        let long = "x".repeat(MAX_LEN + 1);
        for invalid in ["", "with space", "semi;colon", "ünï", long.as_str(), "a\nb"] {
            assert!(!is_valid(invalid.as_bytes()), "{invalid:?}");
        }
        assert!(is_valid("x".repeat(MAX_LEN).as_bytes()));
    }
}
