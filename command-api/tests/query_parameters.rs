//! Query parameters out of the bounds the OpenAPI document gives them are refused with a 422
//! naming them, before anything is read (the fuzz test holds the server to the document
//! in general; these are the bounds whose violation once reached Elasticsearch or the wait).

use command_api::testing::TestApp;

#[tokio::test]
async fn parameters_beyond_their_bounds_are_named_in_a_422() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let long = "a".repeat(1025);
    let id = "0190c3b2-7e4f-7c1a-9f00-0a1b2c3d4e5f";
    for (path, field) in [
        (format!("/v1/customers/{id}?wait_ms=30001"), "wait_ms"),
        (
            format!("/v1/customers/{id}?min_version=1&wait_ms=30001"),
            "wait_ms",
        ),
        ("/v1/customers?limit=0".to_owned(), "limit"),
        ("/v1/customers?limit=101".to_owned(), "limit"),
        (format!("/v1/customers/search?q={}", "q".repeat(201)), "q"),
        (format!("/v1/customers/search?tag={long}"), "tag"),
        (format!("/v1/audit?actor={long}"), "actor"),
        (format!("/v1/audit?event_type={long}"), "event_type"),
        // Positions are signed 64-bit numbers in Elasticsearch: no cursor of ours is bigger.
        ("/v1/audit?cursor=9223372036854775808".to_owned(), "cursor"),
        ("/v1/audit?cursor=-1".to_owned(), "cursor"),
        ("/v1/customers?colour=blue".to_owned(), "colour"),
    ] {
        let reply = app.get(&path, &admin).await;
        assert_eq!(reply.status, 422, "{path}: {:?}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(reply.error_fields(), vec![field], "{path}");
    }
}
