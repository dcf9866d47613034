//! The published OpenAPI document (`GET /openapi.json`).
//!
//! The handlers' `#[utoipa::path]` attributes say what is their own: their parameters, their
//! bodies, the statuses only they give. What every operation can answer because of how the
//! server is built is added here, from the shape of each operation, so that no operation can
//! forget it:
//! - every operation: 400 (a malformed `X-Request-ID` / `X-Correlation-ID`, checked by
//!   [`crate::request_ids`] before routing, which also makes them parameters of every
//!   operation), 408 (the request timeout) and 503 (load shedding, a database or
//!   Elasticsearch away for a moment);
//! - secured operations: 401 and 403 (the [`crate::auth::Caller`] extractor: the token, its
//!   tenant, `X-Tenant-ID`);
//! - operations with a body: 400, 413, 415, 422 ([`crate::extract::ValidJson`]); with query
//!   parameters or `Idempotency-Key`: 422.
//!
//! Every problem is `application/problem+json` (utoipa would say `application/json`), with
//! `Retry-After` on 429 and 503 and `WWW-Authenticate` on 401, as [`ApiError`] sends them.
//! Every response carries `X-Request-ID`. Each header named on a response is marked
//! `required` (utoipa's header type cannot say so): the document names a response header
//! only where the server always sends it.
//!
//! The schemas of what clients send are built here too, from the same constants the
//! value types parse with (`schemas::values`, [`crate::auth::password`]), so the document
//! promises what the server accepts.
//!
//! [`ApiError`]: crate::problem::ApiError

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, OpenApi as Document, Ref, RefOr, Required, Schema};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, Problem};

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The document's frame: title, tags, the security scheme, the problem schemas. The paths
/// come from the handlers' routers (see [`crate::app::router`]).
#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "Event-sourced multi-tenant customer data"),
    modifiers(&BearerToken, &FieldSchemas),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Tokens"),
        (name = "tenants", description = "The tenant registry (platform admins)"),
        (name = "users", description = "A tenant's users (tenant admins)"),
        (name = "customers", description = "Customer commands"),
        (name = "operations", description = "Health and metrics"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as served: `generated` completed with what every operation shares.
pub fn published(mut generated: Document) -> serde_json::Value {
    SharedResponses.modify(&mut generated);
    let mut document =
        serde_json::to_value(&generated).expect("an OpenAPI document serializes to JSON");
    require_response_headers(&mut document);
    document
}

/// Adds what every operation shares (see the module documentation).
#[derive(Debug)]
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                complete_operation(operation);
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn complete_operation(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let has_query = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let has_idempotency_key = parameters
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case("Idempotency-Key"));
    parameters.extend(request_id_headers());

    let mut shared = vec![400, 408, 503];
    if secured {
        shared.extend([401, 403]);
    }
    if has_body {
        shared.extend([413, 415, 422]);
    }
    if has_query || has_idempotency_key {
        shared.push(422);
    }
    let responses = &mut operation.responses.responses;
    for status in shared {
        let entry = responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(problem(status)));
        // A status the handler documents with a body of its own (readiness' 503) can also
        // be a problem from the layers in front of it.
        if let RefOr::T(response) = entry
            && !response.content.contains_key(PROBLEM_JSON)
            && !response.content.values().any(is_problem)
        {
            response
                .content
                .insert(PROBLEM_JSON.to_owned(), problem_content());
        }
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response {
            complete_response(status, response);
        }
    }
}

/// Problems as `application/problem+json`, a description where the handler gave none, the
/// headers the server sends with the status.
fn complete_response(status: &str, response: &mut Response) {
    let content = std::mem::take(&mut response.content);
    for (media_type, body) in content {
        let media_type = if is_problem(&body) {
            PROBLEM_JSON.to_owned()
        } else {
            media_type
        };
        response.content.insert(media_type, body);
    }
    let status: u16 = status.parse().unwrap_or_default();
    if response.description.is_empty() {
        response.description = default_description(status).to_owned();
    }
    let only_problems = !response.content.is_empty()
        && response
            .content
            .keys()
            .all(|media_type| media_type == PROBLEM_JSON);
    if only_problems && matches!(status, 429 | 503) {
        response.headers.insert(
            "Retry-After".to_owned(),
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    if status == 401 {
        response.headers.insert(
            "WWW-Authenticate".to_owned(),
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["Bearer"])),
                )
                .build(),
        );
    }
    response.headers.insert(
        "X-Request-ID".to_owned(),
        HeaderBuilder::new()
            .schema(request_id_schema())
            .description(Some(
                "The client's `X-Request-ID`, or one the server made for the request",
            ))
            .build(),
    );
}

fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location == problem_ref().ref_location)
}

fn problem_ref() -> Ref {
    Ref::from_schema_name("Problem")
}

fn problem_content() -> Content {
    ContentBuilder::new().schema(Some(problem_ref())).build()
}

fn problem(status: u16) -> Response {
    ResponseBuilder::new()
        .description(default_description(status))
        .content(PROBLEM_JSON, problem_content())
        .build()
}

fn default_description(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No content",
        400 => {
            "Malformed request: the body is not JSON, or a header is malformed (named in `errors`)"
        }
        401 => "No token, or one that is invalid, expired or revoked",
        403 => {
            "Forbidden: the caller's role does not allow this, `X-Tenant-ID` differs from the \
             token's tenant, or the tenant is suspended or not registered"
        }
        404 => "No such resource (or one of another tenant)",
        408 => "The request was not received in time",
        409 => "Conflict with the current state",
        412 => "`If-Match` names another version than the current one",
        413 => "The body is over 1 MiB, or the change would make too large an event",
        415 => "The body is not `application/json`",
        422 => "Invalid fields, parameters or `Idempotency-Key`, each named in `errors`",
        428 => "`If-Match` is required",
        429 => "Too many requests: retry after `Retry-After` seconds",
        503 => {
            "The server is at capacity, or a dependency is unavailable for a moment: retry \
             after `Retry-After` seconds"
        }
        504 => "Timed out",
        _ => "",
    }
}

/// `X-Request-ID` and `X-Correlation-ID`, checked on every request (400 otherwise).
fn request_id_headers() -> [Parameter; 2] {
    ["X-Request-ID", "X-Correlation-ID"].map(|name| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Carried into the events' metadata and the logs; `X-Request-ID` is echoed",
            ))
            .schema(Some(request_id_schema()))
            .build()
    })
}

fn request_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^[A-Za-z0-9._:-]{{1,{}}}$",
            crate::request_ids::MAX_LEN
        )))
}

/// Marks every response header `required` (see the module documentation).
fn require_response_headers(document: &mut serde_json::Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            for response in responses.values_mut() {
                if let Some(headers) = response["headers"].as_object_mut() {
                    for header in headers.values_mut() {
                        header["required"] = serde_json::Value::Bool(true);
                    }
                }
            }
        }
    }
}

/// Schemas of the fields clients send, for `#[schema(schema_with = ...)]`: each a
/// reference to a component of its own (registered by [`FieldSchemas`]), so a rule is
/// written once in the document too.
pub mod fields {
    use schemas::{
        AddressLine, CountryCode, CustomerName, DisplayName, EmailAddress, Tag, Tags, TenantName,
    };
    use utoipa::openapi::schema::OneOfBuilder;

    use super::*;
    use crate::auth::password;
    use crate::customers::handlers::MAX_REASON_CHARS;

    /// Characters no free-text field takes: control characters, and those that change how
    /// text is shown without showing themselves (see `schemas::values::bounded_text`). The
    /// zero-width joiners are accepted there between two non-ASCII letters; the document
    /// leaves them out, so that what it allows is always accepted.
    const NOT_IN_TEXT: &str = r"\u0000-\u001F\u007F-\u009F\u061C\u115F\u1160\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\u3164\uFEFF\uFFA0";

    /// Free text of 1 to `max` characters, not blank (the server trims it).
    fn text(max: usize, description: &str) -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .min_length(Some(1))
            .max_length(Some(max))
            .pattern(Some(format!(
                r"^[^{NOT_IN_TEXT}]*[^\s{NOT_IN_TEXT}][^{NOT_IN_TEXT}]*$"
            )))
            .into()
    }

    /// Every component the functions below refer to.
    pub(super) fn components() -> Vec<(&'static str, Schema)> {
        // The dot-atom form with a DNS domain and an alphabetic top-level domain, as
        // `EmailAddress::parse` takes it.
        const ATOM: &str = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
        const LABEL: &str = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
        vec![
            (
                "CustomerName",
                text(CustomerName::MAX_CHARS, "1 to 200 characters, not blank"),
            ),
            (
                "TenantName",
                text(TenantName::MAX_CHARS, "1 to 200 characters, not blank"),
            ),
            (
                "DisplayName",
                text(DisplayName::MAX_CHARS, "1 to 100 characters, not blank"),
            ),
            (
                "AddressLine",
                text(AddressLine::MAX_CHARS, "1 to 200 characters, not blank"),
            ),
            ("Tag", text(Tag::MAX_CHARS, "1 to 40 characters, not blank")),
            (
                "ArchiveReason",
                text(MAX_REASON_CHARS, "1 to 200 characters, not blank"),
            ),
            (
                "EmailAddress",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
                    .max_length(Some(EmailAddress::MAX_CHARS))
                    .pattern(Some(format!(
                        r"^{ATOM}(?:\.{ATOM})*@(?:{LABEL}\.)+[A-Za-z]{{2,63}}$"
                    )))
                    .into(),
            ),
            (
                "PhoneNumber",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "`+` and 8 to 15 digits, the first not 0; spaces, dashes, dots and \
                         parentheses between them are dropped",
                    ))
                    .pattern(Some(r"^\+[ ().-]*[1-9](?:[ ().-]*[0-9]){7,14}[ ().-]*$"))
                    .into(),
            ),
            (
                "CountryCode",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("An assigned ISO 3166-1 alpha-2 code"))
                    .enum_values(Some(CountryCode::assigned()))
                    .into(),
            ),
            (
                "Username",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "3 to 64 characters of a-z, 0-9, `.`, `_`, `-`, starting with a letter \
                         or digit; case-insensitive (kept lowercase)",
                    ))
                    .pattern(Some("^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$"))
                    .into(),
            ),
            (
                "Password",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(password::MIN_CHARS))
                    .max_length(Some(password::MAX_CHARS))
                    .into(),
            ),
            (
                "TenantId",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A lowercase slug"))
                    .pattern(Some("^[a-z][a-z0-9-]{1,62}$"))
                    .into(),
            ),
            (
                "TenantRole",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "A built-in role (`admin`, `member`, `viewer`) or one the tenant \
                         defined (`GET /v1/roles`)",
                    ))
                    .pattern(Some("^[a-z][a-z0-9_-]{1,39}$"))
                    .into(),
            ),
            (
                "Permission",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(
                        schemas::Permission::ALL.map(schemas::Permission::as_str),
                    ))
                    .into(),
            ),
            (
                "EventType",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "The stored name of an event type, of any aggregate type \
                         (`schemas::AGGREGATE_TYPES`)",
                    ))
                    .enum_values(Some(schemas::AggregateType::all_event_types()))
                    .into(),
            ),
        ]
    }

    /// An event type's stored name.
    pub fn event_type() -> RefOr<Schema> {
        component("EventType")
    }

    fn component(name: &str) -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(name))
    }

    /// `name`, or `null`.
    fn nullable(name: &str) -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(component(name))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    }

    pub fn customer_name() -> RefOr<Schema> {
        component("CustomerName")
    }

    pub fn tenant_name() -> RefOr<Schema> {
        component("TenantName")
    }

    pub fn display_name() -> RefOr<Schema> {
        component("DisplayName")
    }

    pub fn address_line() -> RefOr<Schema> {
        component("AddressLine")
    }

    pub fn archive_reason() -> RefOr<Schema> {
        component("ArchiveReason")
    }

    pub fn email() -> RefOr<Schema> {
        component("EmailAddress")
    }

    pub fn phone_or_null() -> RefOr<Schema> {
        nullable("PhoneNumber")
    }

    pub fn country() -> RefOr<Schema> {
        component("CountryCode")
    }

    /// At most 20 tags (after duplicates collapse), or `null` for none.
    pub fn tags_or_null() -> RefOr<Schema> {
        ArrayBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
            .items(component("Tag"))
            .max_items(Some(Tags::MAX))
            .into()
    }

    pub fn username() -> RefOr<Schema> {
        component("Username")
    }

    pub fn password() -> RefOr<Schema> {
        component("Password")
    }

    pub fn tenant_id() -> RefOr<Schema> {
        component("TenantId")
    }

    pub fn optional_tenant_id() -> RefOr<Schema> {
        nullable("TenantId")
    }

    pub fn tenant_role() -> RefOr<Schema> {
        component("TenantRole")
    }

    pub fn optional_tenant_role() -> RefOr<Schema> {
        nullable("TenantRole")
    }

    pub fn optional_display_name() -> RefOr<Schema> {
        nullable("DisplayName")
    }

    pub fn permission() -> RefOr<Schema> {
        component("Permission")
    }

    /// A set of permissions, each at most once.
    pub fn permissions() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(permission())
            .unique_items(true)
            .into()
    }
}

/// Registers the components of [`fields`].
struct FieldSchemas;

impl Modify for FieldSchemas {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in fields::components() {
            components.schemas.insert(name.to_owned(), schema.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::PROBLEM_JSON;

    /// Every operation of the published document: (method, path, operation).
    fn operations(document: &Value) -> Vec<(String, String, Value)> {
        let mut all = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                all.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
        assert!(all.len() > 15, "the document has the API's operations");
        all
    }

    fn is_problem(content: &Value) -> bool {
        content["schema"]["$ref"] == "#/components/schemas/Problem"
    }

    #[test]
    fn every_problem_is_problem_json() {
        let document = crate::app::openapi_document();
        for (method, path, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                for (media_type, content) in response["content"].as_object().into_iter().flatten() {
                    assert_eq!(
                        is_problem(content),
                        media_type == PROBLEM_JSON,
                        "{method} {path} {status}: {media_type}"
                    );
                }
                assert!(
                    !response["description"]
                        .as_str()
                        .unwrap_or_default()
                        .is_empty(),
                    "{method} {path} {status} has a description"
                );
            }
        }
    }

    #[test]
    fn parameters_are_where_the_server_reads_them() {
        let document = crate::app::openapi_document();
        for (method, path, operation) in operations(&document) {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let named = |location: &str| -> Vec<String> {
                parameters
                    .iter()
                    .filter(|p| p["in"] == location)
                    .map(|p| p["name"].as_str().expect("a name").to_owned())
                    .collect()
            };
            let mut in_template: Vec<String> = path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let mut in_path = named("path");
            in_template.sort();
            in_path.sort();
            assert_eq!(in_path, in_template, "{method} {path}: path parameters");
            for header in ["X-Request-ID", "X-Correlation-ID"] {
                assert!(
                    named("header").iter().any(|name| name == header),
                    "{method} {path}: {header}"
                );
            }
        }
        let list = document["paths"]["/v1/customers"]["get"].clone();
        let archive = document["paths"]["/v1/customers/{id}"]["delete"].clone();
        for (operation, name) in [
            (&list, "limit"),
            (&list, "cursor"),
            (&list, "include_archived"),
            (&archive, "reason"),
        ] {
            assert!(
                operation["parameters"]
                    .as_array()
                    .expect("parameters")
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "query"),
                "{name} is a query parameter"
            );
        }
    }

    #[test]
    fn shared_answers_are_on_every_operation_that_can_give_them() {
        let document = crate::app::openapi_document();
        for (method, path, operation) in operations(&document) {
            let responses = &operation["responses"];
            let has = |status: &str| responses[status].is_object();
            for status in ["400", "408", "503"] {
                assert!(has(status), "{method} {path} documents {status}");
            }
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if secured {
                assert!(
                    has("401") && has("403"),
                    "{method} {path} documents 401, 403"
                );
                assert_eq!(
                    responses["401"]["headers"]["WWW-Authenticate"]["required"], true,
                    "{method} {path}"
                );
            }
            if operation["requestBody"].is_object() {
                for status in ["413", "415", "422"] {
                    assert!(has(status), "{method} {path} documents {status}");
                }
            }
            for status in ["429", "503"] {
                let response = &responses[status];
                let only_problems = response["content"]
                    .as_object()
                    .is_some_and(|content| content.keys().all(|media| media == PROBLEM_JSON));
                if only_problems {
                    assert_eq!(
                        response["headers"]["Retry-After"]["required"], true,
                        "{method} {path} {status} says when to retry"
                    );
                }
            }
            for (status, response) in responses.as_object().expect("responses") {
                assert_eq!(
                    response["headers"]["X-Request-ID"]["required"], true,
                    "{method} {path} {status}"
                );
            }
        }
    }

    #[test]
    fn history_values_are_any_json() {
        let document = crate::app::openapi_document();
        let change = &document["components"]["schemas"]["FieldChangeResource"]["properties"];
        assert_eq!(change["old"], serde_json::json!({}));
        assert_eq!(change["new"], serde_json::json!({}));
    }
}
