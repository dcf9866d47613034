//! The tenant registry: platform admins register and suspend tenants; a suspension is
//! refused on every running instance within one second.

use std::time::{Duration, Instant};

use command_api::testing::{PASSWORD, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use service::eventually;

#[tokio::test]
async fn platform_admins_register_and_list_tenants() {
    let app = TestApp::spawn().await;
    let platform = app.platform_token().await;
    let body = json!({"id": "acme", "name": "ACME Corp",
        "admin": {"username": "alice", "password": PASSWORD, "display_name": "Alice"}});

    let created = app.post("/v1/tenants", &platform, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["id"], "acme");
    assert_eq!(created.body["name"], "ACME Corp");
    assert_eq!(created.body["status"], "active");
    assert!(created.body["created_at"].is_string());
    assert_eq!(created.header("location"), Some("/v1/tenants/acme"));

    let again = app.post("/v1/tenants", &platform, body).await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let invalid = app
        .post(
            "/v1/tenants",
            &platform,
            json!({"id": "Bad_Id", "name": "",
            "admin": {"username": "x", "password": "short", "display_name": "A"}}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        invalid.error_fields(),
        ["id", "name", "admin.username", "admin.password"]
    );

    let list = app.get("/v1/tenants", &platform).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/tenants/acme", &platform).await.body["name"],
        "ACME Corp"
    );
    assert_eq!(
        app.get("/v1/tenants/nosuch", &platform).await.status,
        StatusCode::NOT_FOUND
    );

    // The tenant's admin was created with it, and manages users, not tenants.
    let alice = app.token(Some("acme"), "alice", PASSWORD).await;
    assert_eq!(
        app.get("/v1/tenants", &alice).await.status,
        StatusCode::FORBIDDEN
    );
    let users = app.get("/v1/users", &alice).await;
    assert_eq!(users.body["items"][0]["username"], "alice");
    assert_eq!(users.body["items"][0]["role"], "admin");

    // The registration is events, like everything else.
    let events = app.stream("acme", "tenant-acme").await;
    assert_eq!(events[0].event_type, "TenantRegistered");
}

#[tokio::test]
async fn users_are_managed_by_tenant_admins() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let member = app.user("acme", &admin, "mia", "member").await;

    let created = app
        .post("/v1/users", &admin, json!({"username": "Vic", "password": PASSWORD, "display_name": "Vic", "role": "viewer"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["username"], "vic");
    assert_eq!(created.body["role"], "viewer");
    let taken = app
        .post("/v1/users", &admin, json!({"username": "vic", "password": PASSWORD, "display_name": "Vic 2", "role": "viewer"}))
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let bad_role = app
        .post("/v1/users", &admin, json!({"username": "eve", "password": PASSWORD, "display_name": "Eve", "role": "platform_admin"}))
        .await;
    assert_eq!(bad_role.error_fields(), ["role"]);
    let by_member = app
        .post("/v1/users", &member, json!({"username": "eve", "password": PASSWORD, "display_name": "Eve", "role": "admin"}))
        .await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/v1/users", &member).await.status,
        StatusCode::FORBIDDEN
    );

    // The password is in no event.
    let store = event_store::EventStore::new(app.db.projector_pool(1).await);
    let log = store
        .read_global_log(event_store::LogPosition::START, 1000)
        .await
        .unwrap();
    let text = serde_json::to_string(&log.iter().map(|e| &e.event).collect::<Vec<_>>()).unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains("argon2"),
        "a password or its hash reached an event"
    );
}

#[tokio::test]
async fn a_suspension_is_refused_by_every_instance_within_a_second() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    let admin = first.tenant_with_admin("acme").await;
    let platform = first.platform_token().await;
    assert_eq!(second.get("/v1/users", &admin).await.status, StatusCode::OK);

    let suspended = first
        .send(
            Method::POST,
            "/v1/tenants/acme/suspend",
            Some(&platform),
            None,
            &[],
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    assert_eq!(suspended.body["status"], "suspended");
    let at = Instant::now();
    assert_eq!(
        first.get("/v1/users", &admin).await.status,
        StatusCode::FORBIDDEN
    );
    // Within the second since the suspension, the first instance's answer included.
    let left = Duration::from_secs(1).saturating_sub(at.elapsed());
    eventually(left, || async {
        match second.get("/v1/users", &admin).await.status {
            StatusCode::FORBIDDEN => Ok(()),
            other => Err(other),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the second instance still serves a suspended tenant after 1 s: last {last}")
    });
    // Logging in is refused too, with 403 once the password is right.
    assert_eq!(
        second
            .login(Some("acme"), "acme-admin", PASSWORD)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        second
            .login(Some("acme"), "acme-admin", "wrong password!")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let reactivated = second
        .send(
            Method::POST,
            "/v1/tenants/acme/reactivate",
            Some(&platform),
            None,
            &[],
        )
        .await;
    assert_eq!(reactivated.body["status"], "active");
    // The suspension ended every session: the old token stays refused, a new login works
    // on every instance within a second.
    let login = eventually(Duration::from_secs(1), || async {
        let login = first.login(Some("acme"), "acme-admin", PASSWORD).await;
        match login.status {
            StatusCode::OK => Ok(login),
            _ => Err(login),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the first instance did not see the reactivation within 1 s: last {last:?}")
    });
    let fresh = login.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(first.get("/v1/users", &fresh).await.status, StatusCode::OK);
    assert_eq!(
        first.get("/v1/users", &admin).await.status,
        StatusCode::UNAUTHORIZED
    );
    let events = first.stream("acme", "tenant-acme").await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "TenantRegistered",
            "TenantActivated",
            "TenantSuspended",
            "TenantReactivated"
        ]
    );
}
