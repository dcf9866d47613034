//! The read endpoints, end to end: HTTP writes, through the event store, the relay, Kafka
//! and the projector, back out through HTTP reads.

use std::time::Duration;

use command_api::testing::{Reply, TestApp};
use e2e::System;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// GETs `path` until `done` holds for the reply, for at most 60 s; a wait that does not
/// succeed fails the test with the last answer.
async fn eventually(
    app: &TestApp,
    path: &str,
    token: &str,
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    service::eventually(Duration::from_secs(60), || async {
        let reply = app.get(path, token).await;
        if done(&reply) { Ok(reply) } else { Err(reply) }
    })
    .await
    .unwrap_or_else(|last| {
        panic!(
            "GET {path} never answered as expected; last: {} {}",
            last.status, last.body
        )
    })
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_written_can_be_read_searched_and_audited() {
    let app = System::start().await;
    let admin = app.tenant_with_admin("acme").await;
    let viewer = app.user("acme", &admin, "vic", "viewer").await;

    let created = app
        .post("/v1/customers", &admin, json!({"name": "Jürgen Müller", "email": "j.mueller@example.de", "tags": ["vip"],
            "address": {"street": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}}))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();

    // Read-your-writes: wait for the version just written.
    let read = app
        .get(&format!("/v1/customers/{id}?min_version=1"), &viewer)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["name"], "Jürgen Müller");
    assert_eq!(read.body["version"], 1);
    assert_eq!(read.body["status"], "active");
    assert_eq!(read.header("etag"), Some("\"1\""));

    let patched = app
        .send(
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            Some(&admin),
            Some(json!({"email": "juergen@example.de"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(patched.body["version"], 2);
    let read = app
        .get(&format!("/v1/customers/{id}?min_version=2"), &viewer)
        .await;
    assert_eq!(read.body["email"], "juergen@example.de");
    let too_new = app
        .get(
            &format!("/v1/customers/{id}?min_version=99&wait_ms=300"),
            &viewer,
        )
        .await;
    assert_eq!(too_new.status, StatusCode::GATEWAY_TIMEOUT);
    let unknown = app
        .get(&format!("/v1/customers/{}", uuid::Uuid::now_v7()), &viewer)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // The list, page by page; archived customers only on request.
    let second = app.create_customer(&admin, "Ada Lovelace").await;
    let third = app.create_customer(&admin, "Grace Hopper").await;
    app.get(&format!("/v1/customers/{third}?min_version=1"), &viewer)
        .await;
    let page = app.get("/v1/customers?limit=2", &viewer).await;
    assert_eq!(ids(&page), vec![id.clone(), second.clone()]);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!("/v1/customers?limit=2&cursor={cursor}"), &viewer)
        .await;
    assert_eq!(ids(&rest), vec![third.clone()]);
    assert!(rest.body["next_cursor"].is_null());
    app.send(
        Method::DELETE,
        &format!("/v1/customers/{second}"),
        Some(&admin),
        None,
        &[("if-match", "\"1\"")],
    )
    .await;
    app.get(&format!("/v1/customers/{second}?min_version=2"), &viewer)
        .await;
    assert_eq!(
        ids(&app.get("/v1/customers", &viewer).await),
        vec![id.clone(), third.clone()]
    );
    assert_eq!(
        ids(&app
            .get("/v1/customers?include_archived=true", &viewer)
            .await)
        .len(),
        3
    );

    // Search: folded and typo-tolerant.
    for q in ["Mueller", "Muller", "mulller", "berlin"] {
        let found = eventually(&app, &format!("/v1/customers/search?q={q}"), &viewer, |r| {
            r.body["total"] == 1
        })
        .await;
        assert_eq!(ids(&found), vec![id.clone()], "q={q}: {:?}", found.body);
    }
    let tagged = eventually(&app, "/v1/customers/search?tag=vip", &viewer, |r| {
        r.body["total"] == 1
    })
    .await;
    assert_eq!(ids(&tagged), vec![id.clone()]);

    // History.
    let history = eventually(&app, &format!("/v1/customers/{id}/history"), &viewer, |r| {
        r.body["items"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    let items = history.body["items"].as_array().unwrap();
    assert_eq!(items[1]["event_type"], "CustomerUpdated");
    assert_eq!(items[1]["actor"]["name"], "Admin");
    assert_eq!(
        items[1]["changes"],
        json!([{"field": "email", "old": "j.mueller@example.de", "new": "juergen@example.de"}])
    );

    // Audit, for admins only.
    let audit = eventually(&app, "/v1/audit?limit=100", &admin, |r| {
        r.body["items"].as_array().is_some_and(|i| i.len() >= 8)
    })
    .await;
    let types: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"TenantRegistered")
            && types.contains(&"UserRegistered")
            && types.contains(&"CustomerArchived"),
        "{types:?}"
    );
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| !i["request_id"].as_str().unwrap().is_empty())
    );
    let archives = app
        .get("/v1/audit?event_type=CustomerArchived", &admin)
        .await;
    assert_eq!(archives.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/audit", &viewer).await.status,
        StatusCode::FORBIDDEN
    );

    // Bad parameters are problems naming the parameter.
    let bad_limit = app.get("/v1/customers?limit=0", &viewer).await;
    assert_eq!(
        (bad_limit.status, bad_limit.error_fields()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["limit".to_owned()])
    );
    let unknown_param = app.get("/v1/customers/search?query=x", &viewer).await;
    assert_eq!(unknown_param.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown_param.error_fields(), vec!["query".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_list_search_history_and_audit_show_nothing_of_the_first() {
    let app = System::start().await;
    let acme = app.tenant_with_admin("acme").await;
    let globex = app.tenant_with_admin("globex").await;
    let id = app.create_customer(&acme, "Unique Acme Person").await;
    // Wait until acme can see it everywhere, so globex's empty answers mean something (each
    // wait fails the test if it does not succeed).
    let own = app
        .get(&format!("/v1/customers/{id}?min_version=1"), &acme)
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let found = eventually(&app, "/v1/customers/search?q=Unique", &acme, |r| {
        r.body["total"] == 1
    })
    .await;
    assert_eq!(ids(&found), vec![id.clone()], "acme's search finds it");
    eventually(&app, &format!("/v1/customers/{id}/history"), &acme, |r| {
        r.status == StatusCode::OK
    })
    .await;
    let acme_audit = eventually(&app, "/v1/audit?limit=100", &acme, |r| {
        r.body["items"].as_array().is_some_and(|i| i.len() >= 3)
    })
    .await;
    assert!(acme_audit.body["items"].as_array().unwrap().len() >= 3);

    let direct = app.get(&format!("/v1/customers/{id}"), &globex).await;
    assert_eq!(direct.status, StatusCode::NOT_FOUND);
    let waited = app
        .get(
            &format!("/v1/customers/{id}?min_version=1&wait_ms=200"),
            &globex,
        )
        .await;
    assert_eq!(
        waited.status,
        StatusCode::GATEWAY_TIMEOUT,
        "never visible to globex"
    );
    assert!(
        ids(&app
            .get("/v1/customers?include_archived=true", &globex)
            .await)
        .is_empty()
    );
    let search = app
        .get(
            "/v1/customers/search?q=Unique%20Acme%20Person&include_archived=true",
            &globex,
        )
        .await;
    assert_eq!(
        (search.status, search.body["total"].clone()),
        (StatusCode::OK, json!(0))
    );
    let history = app
        .get(&format!("/v1/customers/{id}/history"), &globex)
        .await;
    assert_eq!(history.status, StatusCode::NOT_FOUND);
    let audit = app.get("/v1/audit?limit=100", &globex).await;
    let streams: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["stream_id"].as_str().unwrap())
        .collect();
    assert!(
        !streams.iter().any(|s| s.contains(&id)),
        "globex's audit shows acme's customer"
    );
    assert!(
        streams
            .iter()
            .all(|s| *s == "tenant-globex" || s.starts_with("user-")),
        "{streams:?}"
    );
}
