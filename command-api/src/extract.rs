//! Request extractors that turn HTTP input into typed values or a clear problem.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::problem::{ApiError, FieldError};

/// The largest body the API reads; anything bigger is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Up to this size an oversized body is read to the end before the 413 is sent.
const DRAIN_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// A JSON body: 415 unless it is JSON, 413 over 1 MiB, 400 if it does not parse, 422 naming
/// the field for unknown fields, missing fields and wrong types.
#[derive(Debug)]
pub struct ValidJson<T> {
    pub value: T,
    /// The body as received, for idempotency fingerprints.
    pub raw: axum::body::Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| {
                let media = media.trim().to_ascii_lowercase();
                media == "application/json"
                    || (media.starts_with("application/") && media.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
            // Read and discard a moderately oversized body, so the client gets to read the
            // 413 instead of a connection reset mid-upload; anything bigger is cut off.
            if declared.is_some_and(|length| length <= DRAIN_LIMIT_BYTES) {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT_BYTES).await;
            }
            return Err(ApiError::PayloadTooLarge);
        }
        // Reading past the limit is the only way this fails for a well-formed request.
        let raw = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let value = parse_json(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Parses `bytes` as `T`, telling syntax errors (400) from content errors (422, by field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            return Err(match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => {
                    ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
                }
                Category::Data => {
                    ApiError::Validation(vec![field_error(&path, &inner.to_string())])
                }
            });
        }
    };
    deserializer
        .end()
        .map_err(|error| ApiError::BadRequest(format!("the body is not valid JSON: {error}")))?;
    Ok(value)
}

/// Names the field a serde data error is about. For an unknown field the path already
/// ends with it; a missing field is named only in the message (`missing field `x``),
/// under the path of its object.
fn field_error(path: &str, message: &str) -> FieldError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`'))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let join = |name: String| {
        if path == "." || path.is_empty() {
            name
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = named("unknown field ") {
        let field = if path == "." || path.is_empty() {
            name
        } else {
            path.to_owned()
        };
        return FieldError::new(field, "unknown field");
    }
    if let Some(name) = named("missing field ") {
        return FieldError::new(join(name), "is required");
    }
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    FieldError::new(field, message)
}

/// `If-Match: "<version>"`, required on updates: 428 without it.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(IF_MATCH)
            .ok_or(ApiError::PreconditionRequired)?;
        value
            .to_str()
            .ok()
            .map(str::trim)
            .and_then(|v| v.strip_prefix('"')?.strip_suffix('"'))
            // Digits only: `u64::from_str` would also take a sign (`"+3"`), which no ETag of
            // ours has.
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .map(Self)
            .ok_or_else(|| {
                ApiError::BadHeader(FieldError::new(
                    "If-Match",
                    "must be a version in quotes, e.g. \"3\"",
                ))
            })
    }
}

impl utoipa::IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(
                    "The version you read, in quotes (the `ETag`), e.g. `\"3\"`: 428 without it, \
                     412 when the resource is at another version",
                ))
                // Up to 19 digits: every such number is a u64 (a longer one may not be).
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(r#"^"[0-9]{1,19}"$"#)),
                ))
                .build(),
        ]
    }
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;
}

impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes retries safe for 24 hours: the same key with the same request \
                     returns the first response; with another request it is a 422",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(Self::MAX_LEN))
                        .pattern(Some("^[!-~]+$")),
                ))
                .build(),
        ]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| (1..=Self::MAX_LEN).contains(&k.len()));
        match key {
            Some(key) if key.chars().all(|c| c.is_ascii_graphic()) => {
                Ok(Self(Some(key.to_owned())))
            }
            _ => Err(ApiError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )])),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        address: Option<Address>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Address {
        city: String,
    }

    fn fields(result: Result<Body, ApiError>) -> Vec<FieldError> {
        match result {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let unknown = fields(parse_json(br#"{"name": "a", "nickname": "b"}"#));
        assert_eq!(unknown, vec![FieldError::new("nickname", "unknown field")]);
        let nested = fields(parse_json(
            br#"{"name": "a", "address": {"city": "x", "planet": "y"}}"#,
        ));
        assert_eq!(nested[0].field, "address.planet");
        let missing = fields(parse_json(br#"{}"#));
        assert_eq!(missing, vec![FieldError::new("name", "is required")]);
        let wrong_type = fields(parse_json(br#"{"name": 5}"#));
        assert_eq!(wrong_type[0].field, "name");
        assert!(
            wrong_type[0].message.contains("expected a string"),
            "{}",
            wrong_type[0].message
        );
    }

    fn if_match(value: &str) -> Result<u64, ApiError> {
        let request = axum::http::Request::builder()
            .header(IF_MATCH, value)
            .body(())
            .expect("a request");
        let (mut parts, ()) = request.into_parts();
        let extracted = IfMatch::from_request_parts(&mut parts, &());
        futures_util::FutureExt::now_or_never(extracted)
            .expect("reading a header does not wait")
            .map(|IfMatch(version)| version)
    }

    #[test]
    fn if_match_is_a_quoted_version_and_nothing_else() {
        assert_eq!(if_match("\"3\"").ok(), Some(3));
        assert_eq!(if_match(" \"12\" ").ok(), Some(12));
        for malformed in ["3", "*", "\"+3\"", "\"\"", "W/\"3\"", "\"-1\"", "\"3 \""] {
            assert!(
                matches!(if_match(malformed), Err(ApiError::BadHeader(_))),
                "{malformed}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        assert!(matches!(
            parse_json::<Body>(br#"{"name": "#),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(br#"{"name": "a"} trailing"#),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b"not json"),
            Err(ApiError::BadRequest(_))
        ));
    }
}

/// Query parameters; a malformed one is a 422 naming it.
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|error| {
                let field = error.path().to_string();
                let message = error.into_inner().to_string();
                let field = if field == "." {
                    message.split('`').nth(1).unwrap_or("query").to_owned()
                } else {
                    field
                };
                ApiError::Validation(vec![FieldError::new(field, message)])
            })
    }
}
