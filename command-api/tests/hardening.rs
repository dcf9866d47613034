//! What a security review and a fault run asked of the API, each proven from outside:
//! slow clients cannot hold the server; `?min_version` waits are capped and hold no pooled
//! connection; failed logins are throttled without locking the owner out; idempotency
//! fingerprints are keyed and keys belong to their user; the revocation list fails closed;
//! readiness answers 503 in bounded time when Elasticsearch is away.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use command_api::testing::{PASSWORD, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr_of(app: &TestApp) -> SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .expect("the API's address")
}

/// Reads until the server closes the connection or `within` passes; what was read, and
/// whether the server closed it (an end of stream or a reset).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut received = Vec::new();
    // What was read before a timeout stays in `received`.
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut received))
        .await
        .is_ok();
    (String::from_utf8_lossy(&received).into(), closed)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = TestApp::spawn_with(|config| config.http_header_timeout_ms = 500).await;
    let mut stream = TcpStream::connect(addr_of(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: chronicle\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "the connection is still open 5 s later");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_408() {
    let app = TestApp::spawn_with(|config| config.http_request_timeout_ms = 1_000).await;
    let admin = app.tenant_with_admin("acme").await;
    let mut stream = TcpStream::connect(addr_of(&app)).await.unwrap();
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: chronicle\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A byte every 300 ms: never idle long enough for a read timeout, never done.
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1_500), trickle).await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let app = TestApp::spawn_with(|config| config.http_header_timeout_ms = 500).await;
    let mut stream = TcpStream::connect(addr_of(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: chronicle\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is held open");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(|config| {
        config.http_max_connections = 2;
        config.http_header_timeout_ms = 10_000;
    })
    .await;
    let holders = [
        TcpStream::connect(addr_of(&app)).await.unwrap(),
        TcpStream::connect(addr_of(&app)).await.unwrap(),
    ];
    // No wait needed: the listener's queue is first come, first served, so the server takes
    // both holders (its whole cap) before the connection below.
    let client = reqwest::Client::new();
    let refused = client
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a third connection was served while two were held: {refused:?}"
    );
    drop(holders);
    let served = client
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("served once the held connections closed");
    assert_eq!(served.status(), StatusCode::OK);
}

#[tokio::test]
async fn min_version_waits_are_capped_per_tenant_and_hold_no_connection() {
    // Two pooled connections, and more waiting readers than that: if a wait held a
    // connection, the reads below would find the pool empty (503).
    let app = TestApp::spawn_with(|config| {
        config.db_pool_size = 2;
        config.db_acquire_timeout_ms = 500;
        config.min_version_waits_per_tenant = 4;
    })
    .await;
    let admin = app.tenant_with_admin("acme").await;
    let other = app.tenant_with_admin("globex").await;
    // No projector runs here: the read model never reaches the version, so waits last.
    let id = app.create_customer(&admin, "Awaited").await;
    let waits: Vec<_> = (0..4)
        .map(|_| {
            let client = app.client.clone();
            let url = format!("{}/v1/customers/{id}?min_version=1&wait_ms=3000", app.base);
            let token = admin.clone();
            tokio::spawn(async move {
                client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // Time for the four to arrive and start waiting. Nothing outside shows when they have,
    // and a probing wait would take one of their places.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let fifth = app
        .get(
            &format!("/v1/customers/{id}?min_version=1&wait_ms=3000"),
            &admin,
        )
        .await;
    assert_eq!(
        fifth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        fifth.body
    );
    assert!(fifth.header("retry-after").is_some());
    // Another tenant's waits are not limited by this one's.
    let elsewhere = app.get("/v1/customers?limit=1", &other).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{:?}", elsewhere.body);
    for _ in 0..5 {
        let read = app.get("/v1/customers?limit=5", &admin).await;
        assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    }
    for wait in waits {
        assert_eq!(wait.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    }
}

/// A client whose requests come from `source` (a loopback address of its own).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(source.parse().unwrap()))
        .build()
        .unwrap()
}

async fn login_from(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/v1/auth/token", app.base))
        .json(&json!({"tenant": "acme", "username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_throttled_but_cannot_lock_the_owner_out() {
    let app = TestApp::spawn_with(|config| {
        config.login_per_account_per_minute = 3;
        config.login_per_address_per_minute = 6;
    })
    .await;
    app.tenant_with_admin("acme").await;
    let owner = client_from("127.0.0.1");
    let attacker = client_from("127.0.0.2");

    // Correct logins are never counted.
    for _ in 0..6 {
        let reply = login_from(&app, &owner, "acme-admin", PASSWORD).await;
        assert_eq!(reply.status(), StatusCode::OK);
    }
    // Someone else guesses: after three failures, their attempts are refused before any
    // password is checked, the right one included.
    for _ in 0..3 {
        let reply = login_from(&app, &attacker, "acme-admin", "wrong password guess").await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }
    let refused = login_from(&app, &attacker, "acme-admin", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // The owner, elsewhere, is not locked out.
    let reply = login_from(&app, &owner, "acme-admin", PASSWORD).await;
    assert_eq!(reply.status(), StatusCode::OK);

    // The attacker's network is out of budget for other accounts too, after its own.
    for n in 0..3 {
        let reply = login_from(
            &app,
            &attacker,
            &format!("someone-{n}"),
            "wrong password guess",
        )
        .await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }
    let reply = login_from(&app, &attacker, "someone-else", "wrong password guess").await;
    assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn malformed_login_input_is_refused_without_becoming_a_key() {
    let app = TestApp::spawn().await;
    app.tenant_with_admin("acme").await;
    for (tenant, username, password) in [
        (
            json!("acme"),
            json!("x".repeat(100_000)),
            json!("whatever password"),
        ),
        (
            json!("Not A Tenant\u{202E}"),
            json!("acme-admin"),
            json!(PASSWORD),
        ),
        (
            json!("acme"),
            json!("acme-admin\n2026 INFO forged line"),
            json!(PASSWORD),
        ),
        (
            json!("acme"),
            json!("acme-admin"),
            json!("p".repeat(1_000_000)),
        ),
    ] {
        let started = Instant::now();
        let reply = app
            .client
            .post(format!("{}/v1/auth/token", app.base))
            .json(&json!({"tenant": tenant, "username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
        // No hash was spent on it (a hash takes tens of milliseconds, far more in debug).
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn idempotency_fingerprints_are_keyed_and_keys_belong_to_their_user() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let colleague = app.user("acme", &admin, "colleague", "admin").await;

    let body = json!({"username": "newcomer", "password": "a brand new password", "display_name": "New", "role": "member"});
    let created = app
        .send(
            Method::POST,
            "/v1/users",
            Some(&admin),
            Some(body.clone()),
            &[("idempotency-key", "shared-key")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);

    // The stored fingerprint is not a digest anyone could recompute from a guess.
    let mut owner = app.db.owner_connection().await;
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', 'acme', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar(
        "SELECT request_fingerprint FROM idempotency_keys WHERE idempotency_key = 'shared-key'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let raw = serde_json::to_vec(&body).unwrap();
    let mut plain = Sha256::new();
    plain.update(b"POST /v1/users\n");
    plain.update(&raw);
    let plain: String = plain
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(
        stored, plain,
        "the fingerprint is a plain digest of the body"
    );
    assert!(!stored.contains("brand new password"));

    // Another user's request with the same key is a request of its own: neither a replay
    // of the first nor a conflict with it.
    let customer = json!({"name": "Theirs", "email": "theirs@example.com"});
    let first = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&admin),
            Some(customer.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    let second = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&colleague),
            Some(customer.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    assert_ne!(first.body["id"], second.body["id"]);
    assert!(second.header("idempotent-replayed").is_none());
    // The same user's retry still replays.
    let retry = app
        .send(
            Method::POST,
            "/v1/customers",
            Some(&colleague),
            Some(customer),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(retry.body["id"], second.body["id"]);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn without_the_change_feed_tokens_are_not_trusted_and_a_revocation_meanwhile_is_seen() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let victim = app.user("acme", &admin, "victim", "member").await;
    assert_eq!(
        app.get("/v1/customers", &victim).await.status,
        StatusCode::OK
    );

    // Cut the feed and keep it from coming back: the instance's LISTEN connection is
    // ended, and the database refuses new connections for a while.
    let mut owner = app.db.owner_connection().await;
    let database = app.db.name().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "REVOKE CONNECT ON DATABASE {database} FROM PUBLIC"
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'command-api change feed') AS t",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(ended >= 1, "no LISTEN connection found");

    // Meanwhile the victim's token is revoked, where no notification can reach the API.
    let claims = decode_claims(&victim);
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1::uuid, now() + interval '1 hour')",
    )
    .bind(claims["jti"].as_str().unwrap())
    .execute(&mut owner)
    .await
    .unwrap();

    // Fail closed: authenticated requests get 503 with Retry-After, not the stale answer.
    let refused = service::eventually(Duration::from_secs(5), || async {
        let reply = app.get("/v1/customers", &victim).await;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => Ok(reply),
            _ => Err(reply),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("requests were still served 5 s after the feed was cut: last {last:?}")
    });
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        refused.body
    );
    assert!(refused.header("retry-after").is_some());
    let ready = app.send(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);

    // The feed returns: the reload after LISTEN finds the revocation made while it was away.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT CONNECT ON DATABASE {database} TO PUBLIC"
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    let after = service::eventually(Duration::from_secs(10), || async {
        let reply = app.get("/v1/customers", &victim).await;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => Err(reply),
            _ => Ok(reply),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("still 503 10 s after the feed could return: last {last:?}"));
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{:?}", after.body);
    assert_eq!(
        app.get("/v1/customers", &admin).await.status,
        StatusCode::OK
    );
}

fn decode_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn readiness_answers_503_promptly_when_elasticsearch_is_away() {
    // Nothing listens on a freshly released port: Elasticsearch is "down".
    let port = event_store::testing::free_port();
    let app = TestApp::spawn_unready(|config| {
        config.elasticsearch_url = format!("http://127.0.0.1:{port}");
    })
    .await;
    let started = Instant::now();
    let ready = app.send(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["elasticsearch"], false);
    assert_eq!(ready.body["database"], true);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn names_with_bidi_overrides_or_zero_width_characters_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let reply = app
        .post(
            "/v1/customers",
            &admin,
            json!({"name": "Alice\u{202E}ecilA", "email": "a@example.com", "tags": ["v\u{200B}ip"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_fields(), vec!["name", "tags"]);
    let reply = app
        .post(
            "/v1/users",
            &admin,
            json!({"username": "spoof", "password": PASSWORD, "display_name": "Bob\u{2066}", "role": "member"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_fields(), vec!["display_name"]);
}

#[tokio::test]
async fn metrics_name_at_most_the_configured_tenants_and_count_the_rest_as_other() {
    let app = TestApp::spawn_with(|config| config.metrics_max_tenants = 1).await;
    for tenant in ["acme", "globex", "initech"] {
        let admin = app.tenant_with_admin(tenant).await;
        app.create_customer(&admin, "Counted").await;
    }
    let metrics = app.ops_metrics().await;
    let tenants: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("chronicle_http_requests_total") && l.contains("route=\"/v1/customers\"")
        })
        .filter_map(|l| l.split("tenant=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        tenants,
        ["acme", "other"].into_iter().collect(),
        "{metrics}"
    );
}

/// The resident memory of this process (the API under test runs in it), in KiB.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_holds_memory_bounded_and_sheds_with_503() {
    let app = TestApp::spawn_with(|config| {
        config.login_per_account_per_minute = 10_000;
        config.login_per_address_per_minute = 10_000;
    })
    .await;
    app.tenant_with_admin("acme").await;
    let before = resident_kib();
    // Each check holds 19 MiB while it runs: 200 at once on as many threads would take
    // gigabytes. Half of them guess wrong, which costs a hash just the same.
    let client = reqwest::Client::new();
    let attempts = (0..200).map(|n| {
        let client = client.clone();
        let url = format!("{}/v1/auth/token", app.base);
        let password = if n % 2 == 0 {
            PASSWORD
        } else {
            "a wrong password guess"
        };
        async move {
            client
                .post(url)
                .json(&json!({"tenant": "acme", "username": "acme-admin", "password": password}))
                .send()
                .await
                .unwrap()
        }
    });
    let replies = futures_util::future::join_all(attempts).await;
    let grown_mib = resident_kib().saturating_sub(before) / 1024;
    let mut ok = 0;
    for reply in &replies {
        match reply.status() {
            StatusCode::OK => ok += 1,
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(reply.headers().contains_key("retry-after"));
            }
            other => panic!("a login answered {other}"),
        }
    }
    assert!(ok > 0, "no login went through");
    assert!(
        grown_mib < 100,
        "200 logins at once grew the process by {grown_mib} MiB"
    );
}
