//! Customer commands through HTTP against real PostgreSQL.

use command_api::testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_customer_is_created_changed_and_archived() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let member = app.user("acme", &admin, "mia", "member").await;

    let created = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&member),
            Some(json!({
                "name": "Jürgen Müller", "email": "j.mueller@example.de", "phone": "+49 30 1234567",
                "address": {"street": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "de"},
                "tags": ["vip"]
            })),
            &[("x-request-id", "req-create-1"), ("x-correlation-id", "journey-7")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["version"], 1);
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/customers/{id}").as_str())
    );
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.header("x-request-id"), Some("req-create-1"));

    let path = format!("/v1/customers/{id}");
    let patched = app
        .patch_at(
            &path,
            &member,
            1,
            json!({"email": "juergen@example.de", "phone": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(patched.body, json!({"id": id, "version": 2}));
    assert_eq!(patched.header("etag"), Some("\"2\""));

    // The same values again: nothing happens, nothing is appended.
    let unchanged = app
        .patch_at(&path, &member, 2, json!({"email": "juergen@example.de"}))
        .await;
    assert_eq!(unchanged.status, StatusCode::OK);
    assert_eq!(unchanged.body["version"], 2);

    let archived = app
        .send(
            Method::DELETE,
            &path,
            Some(&member),
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(archived.status, StatusCode::OK);
    assert_eq!(archived.body["version"], 3);
    let again = app.patch_at(&path, &member, 3, json!({"name": "X"})).await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "an archived customer does not change"
    );

    let events = app.stream("acme", &format!("customer-{id}")).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["CustomerRegistered", "CustomerUpdated", "CustomerArchived"]
    );
    assert_eq!(events[0].payload["address"]["country"], "DE");
    assert_eq!(
        (events[2].schema_version, events[2].payload.clone()),
        (2, json!({"reason": "archived via the API"}))
    );
    assert_eq!(events[0].payload["phone"], "+49301234567");
    assert_eq!(
        events[1].payload,
        json!({"email": "juergen@example.de", "phone": null})
    );
    let metadata = &events[0].metadata;
    assert_eq!(metadata.actor_name, "mia");
    assert_eq!(metadata.request_id, "req-create-1");
    assert_eq!(metadata.correlation_id, "journey-7");
    assert_eq!(metadata.causation_id, "req-create-1");
    assert!(
        !events[1].metadata.request_id.is_empty(),
        "a generated request id is recorded too"
    );
}

#[tokio::test]
async fn invalid_input_gets_a_problem_naming_each_field() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;

    let invalid = app
        .post(
            "/v1/customers",
            &admin,
            json!({"name": "  ", "email": "not-an-email", "phone": "12",
            "address": {"street": "x", "city": "y", "postal_code": "z", "country": "XX"},
            "tags": ["ok", "a-tag-that-is-far-too-long-to-be-accepted-here"]}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        invalid.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(invalid.body["status"], 422);
    assert_eq!(
        invalid.error_fields(),
        ["name", "email", "phone", "address.country", "tags"]
    );

    let unknown = app
        .post(
            "/v1/customers",
            &admin,
            json!({"name": "A", "email": "a@b.io", "nickname": "x"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.error_fields(), ["nickname"]);

    let missing = app
        .post("/v1/customers", &admin, json!({"email": "a@b.io"}))
        .await;
    assert_eq!(missing.error_fields(), ["name"]);

    let malformed = app
        .client
        .post(format!("{}/v1/customers", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );

    let too_large = app
        .client
        .post(format!("{}/v1/customers", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{}\"}}", "a".repeat(1024 * 1024 + 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let not_json = app
        .client
        .post(format!("{}/v1/customers", app.base))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("name=A")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let id = app.create_customer(&admin, "Ada").await;
    let path = format!("/v1/customers/{id}");
    let bad_patch = app
        .patch_at(&path, &admin, 1, json!({"email": "nope", "planet": "Mars"}))
        .await;
    assert_eq!(bad_patch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_patch.error_fields(), ["planet"]);
    let bad_value = app
        .patch_at(&path, &admin, 1, json!({"email": "nope"}))
        .await;
    assert_eq!(bad_value.error_fields(), ["email"]);
    assert_eq!(
        app.stream("acme", &format!("customer-{id}")).await.len(),
        1,
        "refused writes store nothing"
    );
}

#[tokio::test]
async fn updates_need_the_current_version() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let id = app.create_customer(&admin, "Ada").await;
    let path = format!("/v1/customers/{id}");

    let without = app.patch(&path, &admin, json!({"name": "B"})).await;
    assert_eq!(without.status, StatusCode::PRECONDITION_REQUIRED);
    let stale = app.patch_at(&path, &admin, 7, json!({"name": "B"})).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.body["detail"].as_str().unwrap().contains("version 1"));
    let delete_without = app
        .send(Method::DELETE, &path, Some(&admin), None, &[])
        .await;
    let empty_reason = app
        .send(
            Method::DELETE,
            &format!("{path}?reason=%20"),
            Some(&admin),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(empty_reason.error_fields(), ["reason"]);
    assert_eq!(delete_without.status, StatusCode::PRECONDITION_REQUIRED);
    let unknown = app
        .patch_at(
            &format!("/v1/customers/{}", uuid::Uuid::now_v7()),
            &admin,
            1,
            json!({"name": "B"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_patches_on_one_version_have_one_winner() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let id = app.create_customer(&admin, "Ada").await;
    let path = format!("/v1/customers/{id}");

    // All eight in flight at once, each made on version 1.
    let patches =
        (0..8).map(|i| app.patch_at(&path, &admin, 1, json!({"name": format!("Writer {i}")})));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(patches)
        .await
        .into_iter()
        .map(|reply| reply.status)
        .collect();
    let winners = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let losers = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((winners, losers), (1, 7), "{statuses:?}");
    assert_eq!(app.stream("acme", &format!("customer-{id}")).await.len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response_and_refuses_another_body() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let body = json!({"name": "Once", "email": "once@example.com"});

    let first = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&admin),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    let second = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&admin),
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body, second.body, "the replay is the first response");
    assert_eq!(second.header("location"), first.header("location"));
    assert_eq!(second.header("idempotent-replayed"), Some("true"));

    let other = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&admin),
            Some(json!({"name": "Twice", "email": "once@example.com"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Only one customer exists.
    let store = event_store::EventStore::new(app.db.projector_pool(1).await);
    let log = store
        .read_global_log(event_store::LogPosition::START, 1000)
        .await
        .unwrap();
    let registered = log
        .iter()
        .filter(|e| e.event.event_type == "CustomerRegistered")
        .count();
    assert_eq!(registered, 1);

    // The same key in another tenant is another key.
    let globex = app.tenant_with_admin("globex").await;
    let theirs = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&globex),
            Some(body),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["id"], first.body["id"]);

    // Patches replay too, and append nothing the second time.
    let id = first.body["id"].as_str().unwrap();
    let path = format!("/v1/customers/{id}");
    for _ in 0..2 {
        let reply = app
            .send(
                Method::PATCH,
                &path,
                Some(&admin),
                Some(json!({"name": "Renamed"})),
                &[("if-match", "\"1\""), ("idempotency-key", "p-1")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["version"], 2);
    }
    assert_eq!(app.stream("acme", &format!("customer-{id}")).await.len(), 2);
}

#[tokio::test]
async fn roles_decide_who_writes() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let viewer = app.user("acme", &admin, "vic", "viewer").await;
    let platform = app.platform_token().await;

    let by_viewer = app
        .post(
            "/v1/customers",
            &viewer,
            json!({"name": "A", "email": "a@b.io"}),
        )
        .await;
    assert_eq!(by_viewer.status, StatusCode::FORBIDDEN);
    let by_platform = app
        .post(
            "/v1/customers",
            &platform,
            json!({"name": "A", "email": "a@b.io"}),
        )
        .await;
    assert_eq!(by_platform.status, StatusCode::FORBIDDEN);
    let id = app.create_customer(&admin, "Ada").await;
    let archive = app
        .send(
            Method::DELETE,
            &format!("/v1/customers/{id}"),
            Some(&viewer),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(archive.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn another_tenants_customer_is_not_found_on_every_endpoint() {
    let app = TestApp::spawn().await;
    let acme = app.tenant_with_admin("acme").await;
    let globex = app.tenant_with_admin("globex").await;
    let id = app.create_customer(&acme, "Acme's Customer").await;
    let path = format!("/v1/customers/{id}");

    let patch = app
        .patch_at(&path, &globex, 1, json!({"name": "Stolen"}))
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    let archive = app
        .send(
            Method::DELETE,
            &path,
            Some(&globex),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(archive.status, StatusCode::NOT_FOUND);
    let unknown = app
        .patch_at(
            &format!("/v1/customers/{}", uuid::Uuid::now_v7()),
            &globex,
            1,
            json!({"name": "X"}),
        )
        .await;
    assert_eq!(
        (patch.body.clone(), patch.status),
        (unknown.body, unknown.status),
        "exactly as if it did not exist"
    );

    let events = app.stream("acme", &format!("customer-{id}")).await;
    assert_eq!(events.len(), 1, "nothing of globex's attempts was stored");
}

#[tokio::test]
async fn a_customer_recorded_under_older_rules_can_still_be_changed() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    // Recorded before names were limited to 200 characters: stored as it was.
    let id = uuid::Uuid::now_v7();
    let long_name = "Old ".repeat(75);
    let store = event_store::EventStore::new(app.db.app_pool(1).await);
    store
        .append_to_stream(
            &event_store::TenantId::parse("acme").unwrap(),
            &event_store::StreamId::for_aggregate("customer", id).unwrap(),
            event_store::ExpectedVersion::NoStream,
            vec![event_store::NewEvent {
                event_id: uuid::Uuid::now_v7(),
                aggregate: "customer",
                event_type: "CustomerRegistered",
                schema_version: 1,
                payload: json!({"name": long_name, "email": "old@example.com"}),
                metadata: event_store::testing::fixtures::metadata(),
            }],
        )
        .await
        .unwrap();
    let path = format!("/v1/customers/{id}");

    let phone = app
        .patch_at(&path, &admin, 1, json!({"phone": "+49 30 1234567"}))
        .await;
    assert_eq!(phone.status, StatusCode::OK, "{:?}", phone.body);
    assert_eq!(phone.body["version"], 2);
    let renamed = app
        .patch_at(&path, &admin, 2, json!({"name": "N".repeat(201)}))
        .await;
    assert_eq!(
        renamed.error_fields(),
        ["name"],
        "a name the patch sets follows today's rules"
    );
    let events = app.stream("acme", &format!("customer-{id}")).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].payload, json!({"phone": "+49301234567"}));
}
