//! Naming the tenant of a request without a token: by host (`<tenant>.<base domain>`,
//! `acme.localhost` in development) or by `X-Tenant-ID`. Login and sign-up take it from
//! there when the body does not say; with a token, the token decides and these may only
//! repeat it.

use axum::http::HeaderMap;
use axum::http::header::HOST;
use event_store::TenantId;

use crate::problem::FieldError;

/// The tenant the request's host or `X-Tenant-ID` names, if any; an error naming the
/// header when `X-Tenant-ID` is malformed, or when the two name different tenants.
pub fn tenant_named_by_request(
    headers: &HeaderMap,
    base_domain: &str,
) -> Result<Option<String>, FieldError> {
    let header = match headers.get("x-tenant-id") {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .ok()
                .and_then(|v| TenantId::parse(v.trim()).ok())
                .ok_or_else(|| FieldError::new("X-Tenant-ID", "is not a tenant id"))?;
            Some(value.as_str().to_owned())
        }
    };
    let by_host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|host| tenant_of_host(host, base_domain));
    match (header, by_host) {
        (Some(header), Some(host)) if header != host => Err(FieldError::new(
            "X-Tenant-ID",
            format!("names `{header}`, but the host names `{host}`"),
        )),
        (header, host) => Ok(header.or(host)),
    }
}

/// `acme` for `acme.example.com[:port]` under the base domain `example.com`; nothing for
/// the base domain itself, deeper names, or labels that are not tenant ids.
pub fn tenant_of_host(host: &str, base_domain: &str) -> Option<String> {
    let base_domain = base_domain.trim_matches('.').to_ascii_lowercase();
    if base_domain.is_empty() {
        return None;
    }
    let host = host.trim().to_ascii_lowercase();
    // IPv6 literals never name a tenant; otherwise strip the port.
    if host.starts_with('[') {
        return None;
    }
    let name = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(name, _port)| name);
    let label = name.strip_suffix(&base_domain)?.strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    TenantId::parse(label).ok().map(|id| id.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_tenant_is_the_one_label_before_the_base_domain() {
        assert_eq!(
            tenant_of_host("acme.localhost:8080", "localhost").as_deref(),
            Some("acme")
        );
        assert_eq!(
            tenant_of_host("ACME.Example.com", "example.com").as_deref(),
            Some("acme")
        );
        assert_eq!(tenant_of_host("localhost:8080", "localhost"), None);
        assert_eq!(tenant_of_host("a.b.example.com", "example.com"), None);
        assert_eq!(tenant_of_host("acme.example.org", "example.com"), None);
        assert_eq!(
            tenant_of_host("x.localhost", "localhost"),
            None,
            "not a tenant id"
        );
        assert_eq!(tenant_of_host("[::1]:8080", "localhost"), None);
        assert_eq!(tenant_of_host("evilacme.localhost", "acme.localhost"), None);
    }

    #[test]
    fn header_and_host_must_agree() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("acme.localhost"));
        assert_eq!(
            tenant_named_by_request(&headers, "localhost")
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        headers.insert("x-tenant-id", HeaderValue::from_static("globex"));
        assert_eq!(
            tenant_named_by_request(&headers, "localhost")
                .unwrap_err()
                .field,
            "X-Tenant-ID"
        );
        headers.insert("x-tenant-id", HeaderValue::from_static("acme"));
        assert_eq!(
            tenant_named_by_request(&headers, "localhost")
                .unwrap()
                .as_deref(),
            Some("acme")
        );
        headers.insert("x-tenant-id", HeaderValue::from_static("Not A Tenant"));
        assert!(tenant_named_by_request(&headers, "localhost").is_err());
    }
}
