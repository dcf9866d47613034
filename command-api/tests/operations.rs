//! Health, readiness, metrics, OpenAPI, request ids, problems for unknown routes, and the
//! per-tenant write limit.

use command_api::testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_readiness_metrics_and_openapi_are_served() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    app.create_customer(&admin, "Counted").await;

    let health = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.send(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);

    // The API's port names tenants in /metrics to platform admins only; scrapers read the
    // same on the operations listener.
    let anonymous = app.send(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let tenant_admin = app
        .send(Method::GET, "/metrics", Some(&admin), None, &[])
        .await;
    assert_eq!(tenant_admin.status, StatusCode::FORBIDDEN);
    let platform = app.platform_token().await;
    let as_platform = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&platform)
        .send()
        .await
        .unwrap();
    assert_eq!(as_platform.status(), StatusCode::OK);
    let metrics = app.ops_metrics().await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("chronicle_http_requests_total") && l.contains("route=\"/v1/customers\"")
        })
        .expect("a request count for the customer route");
    assert!(
        line.contains("tenant=\"acme\"")
            && line.contains("status=\"201\"")
            && line.contains("method=\"POST\""),
        "{line}"
    );
    assert!(metrics.contains("chronicle_http_request_duration_seconds_bucket"));

    let openapi = app
        .send(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = openapi.body["paths"].as_object().unwrap();
    for path in [
        "/v1/auth/token",
        "/v1/tenants",
        "/v1/tenants/{id}/suspend",
        "/v1/users",
        "/v1/customers",
        "/v1/customers/{id}",
        "/healthz",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(paths["/v1/customers/{id}"]["patch"].is_object());
    assert!(openapi.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn every_response_has_a_request_id_and_errors_are_problems() {
    let app = TestApp::spawn().await;
    let generated = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert!(
        generated
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    let echoed = app
        .send(
            Method::GET,
            "/nowhere",
            None,
            None,
            &[("x-request-id", "mine-42")],
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("mine-42"));
    assert_eq!(echoed.status, StatusCode::NOT_FOUND);
    assert_eq!(
        echoed.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(echoed.body["status"], 404);
    let wrong_method = app
        .send(Method::PUT, "/v1/customers", None, None, &[])
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenants_flood_does_not_limit_another() {
    let app = TestApp::spawn_with(|config| {
        config.tenant_writes_per_second = 1;
        config.tenant_write_burst = 3;
    })
    .await;
    let acme = app.tenant_with_admin("acme").await;
    let globex = app.tenant_with_admin("globex").await;

    let mut acme_statuses = Vec::new();
    for i in 0..10 {
        let reply = app
            .post(
                "/v1/customers",
                &acme,
                json!({"name": format!("Flood {i}"), "email": "f@example.com"}),
            )
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
            assert!(retry_after >= 1);
        }
        acme_statuses.push(reply.status);
    }
    let limited = acme_statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        limited >= 5,
        "acme's flood was not limited: {acme_statuses:?}"
    );

    // Globex, meanwhile, has its own bucket.
    for i in 0..3 {
        let reply = app
            .post(
                "/v1/customers",
                &globex,
                json!({"name": format!("Calm {i}"), "email": "c@example.com"}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "globex was limited by acme's flood"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight() {
    let db = event_store::testing::ScratchDatabase::create().await;
    let keys =
        std::env::temp_dir().join(format!("chronicle-keys-{}", uuid::Uuid::now_v7().simple()));
    command_api::auth::keys::write_key_pair(&keys, "k1").unwrap();
    let port = event_store::testing::free_port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_command-api"))
        .env("CHRONICLE_HTTP_ADDR", format!("127.0.0.1:{port}"))
        // Not the default metrics address: `./dev up`'s API may hold it.
        .env("CHRONICLE_API_METRICS_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", db.app_url())
        .env("CHRONICLE_JWT_KEYS_DIR", &keys)
        .env(
            "CHRONICLE_BOOTSTRAP_ADMIN",
            format!("platform-admin:{}", command_api::testing::ADMIN_PASSWORD),
        )
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    service::eventually(std::time::Duration::from_secs(30), || async {
        client.get(format!("{base}/healthz")).send().await.map(drop)
    })
    .await
    .unwrap_or_else(|last| panic!("the server did not start within 30 s: last {last}"));

    // Logins hash a password each: a batch of them is still running when SIGTERM arrives.
    let logins: Vec<_> = (0..12)
        .map(|_| {
            let request = client
                .post(format!("{base}/v1/auth/token"))
                .json(&json!({"username": "platform-admin", "password": command_api::testing::ADMIN_PASSWORD}));
            tokio::spawn(async move { request.send().await.map(|r| r.status()) })
        })
        .collect();
    // A moment for them to reach the server (one sent after SIGTERM would be refused): the
    // server is another process, and nothing outside it shows which requests it holds.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();

    for login in logins {
        let status = login
            .await
            .unwrap()
            .expect("a request in flight was cut off");
        assert!(
            status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "the server did not exit cleanly: {exit}");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "still accepting after shutdown"
    );
    let _ = std::fs::remove_dir_all(keys);
}
