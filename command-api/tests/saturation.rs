//! Overload and hostile input: a saturated database pool or server answers 503 with
//! `Retry-After`, never 500; request and correlation ids are bounded; nothing is stored for
//! what is refused.

use std::future::Future;
use std::time::Duration;

use command_api::testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;

/// Holds an exclusive lock on the event table from outside, so every append waits (holding
/// its pooled connection and its place in the server) until the lock is released.
async fn block_appends(app: &TestApp) -> sqlx::PgConnection {
    let mut owner = app.db.owner_connection().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut owner)
        .await
        .unwrap();
    owner
}

async fn release(mut owner: sqlx::PgConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut owner).await.unwrap();
    owner.close().await.unwrap();
}

/// `Ok` once `count` statements wait for the lock [`block_appends`] holds; else how many do.
async fn waiting_for_the_lock(watcher: &sqlx::PgPool, count: i64) -> Result<(), i64> {
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted",
    )
    .fetch_one(watcher)
    .await
    .unwrap();
    if waiting >= count {
        Ok(())
    } else {
        Err(waiting)
    }
}

fn create<'a>(
    app: &'a TestApp,
    token: &'a str,
    i: usize,
) -> impl Future<Output = command_api::testing::Reply> + 'a {
    app.send(
        Method::POST,
        "/v1/customers",
        Some(token),
        Some(json!({"name": format!("Waiting {i}"), "email": "w@example.com"})),
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_answers_503_with_retry_after_never_500() {
    let app = TestApp::spawn_with(|config| {
        config.db_pool_size = 4;
        config.db_acquire_timeout_ms = 300;
    })
    .await;
    let admin = app.tenant_with_admin("acme").await;

    let lock = block_appends(&app).await;
    // Four requests take the four connections and wait on the lock; the rest wait for a
    // connection, past the acquire budget.
    let requests: Vec<_> = (0..12).map(|i| create(&app, &admin, i)).collect();
    let (replies, ()) = tokio::join!(futures_util::future::join_all(requests), async {
        // The scenario: the lock outlasts the acquire budget (300 ms) several times over.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        release(lock).await;
    });

    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "only 201 or 503: {statuses:?}"
    );
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(!refused.is_empty(), "the pool was saturated: {statuses:?}");
    for reply in refused {
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        assert!(
            reply.body["type"]
                .as_str()
                .unwrap()
                .ends_with("/unavailable"),
            "{:?}",
            reply.body
        );
    }
    // The requests that got a connection (the pool's, less the one the change feed
    // listens on) waited for the lock and went through.
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    assert!(
        accepted >= 1,
        "the requests holding connections went through: {statuses:?} {:?}",
        replies
            .iter()
            .map(|r| r.body.to_string())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_server_sheds_load_with_503_at_once() {
    let app = TestApp::spawn_with(|config| config.http_max_in_flight = 3).await;
    let admin = app.tenant_with_admin("acme").await;

    let lock = block_appends(&app).await;
    let watcher = app.db.app_pool(1).await;
    let blocked: Vec<_> = (0..3).map(|i| create(&app, &admin, i)).collect();
    let (replies, ()) = tokio::join!(futures_util::future::join_all(blocked), async {
        // Wait until the three wait on the lock (seen in the database: a probe through the
        // server would take a place itself, and could push one of them out).
        service::eventually(Duration::from_secs(5), || waiting_for_the_lock(&watcher, 3))
            .await
            .unwrap_or_else(|last| panic!("never three appends waiting on the lock: last {last}"));
        // Three requests hold every place; the next is refused without waiting.
        let started = std::time::Instant::now();
        let shed = app.send(Method::GET, "/healthz", None, None, &[]).await;
        assert_eq!(
            shed.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            shed.body
        );
        assert_eq!(shed.header("retry-after"), Some("1"));
        assert!(shed.header("x-request-id").is_some());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused at once"
        );
        release(lock).await;
    });
    for reply in replies {
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let after = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(after.status, StatusCode::OK);
}

#[tokio::test]
async fn request_and_correlation_ids_are_bounded_and_nothing_is_stored_for_a_bad_one() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let body = json!({"name": "Ada", "email": "ada@example.com"});

    // 330 KB: today's Elasticsearch refuses keywords that long; a 128-character id is the
    // longest the contract takes.
    let huge = "r".repeat(330 * 1024);
    let just_over = "r".repeat(129);
    let longest = "r".repeat(128);
    for (header, value, expected) in [
        ("x-request-id", huge.as_str(), StatusCode::BAD_REQUEST),
        ("x-correlation-id", huge.as_str(), StatusCode::BAD_REQUEST),
        ("x-request-id", just_over.as_str(), StatusCode::BAD_REQUEST),
        ("x-correlation-id", "has space", StatusCode::BAD_REQUEST),
        ("x-request-id", "semi;colon", StatusCode::BAD_REQUEST),
        ("x-request-id", longest.as_str(), StatusCode::CREATED),
        ("x-correlation-id", "journey:7.a_b-c", StatusCode::CREATED),
    ] {
        let reply = app
            .send(
                Method::POST,
                "/v1/customers",
                Some(&admin),
                Some(body.clone()),
                &[(header, value)],
            )
            .await;
        assert_eq!(reply.status, expected, "{header}: {} chars", value.len());
        if expected == StatusCode::BAD_REQUEST {
            let named = if header == "x-request-id" {
                "X-Request-ID"
            } else {
                "X-Correlation-ID"
            };
            assert_eq!(reply.error_fields(), [named]);
            let echoed = reply.header("x-request-id").unwrap();
            assert_ne!(echoed, value, "a refused id is not echoed");
            assert!(echoed.len() <= 128);
        } else {
            assert!(reply.header("x-request-id").map(str::len).unwrap() <= 128);
        }
    }
    // Only the two accepted creations were stored.
    let store = event_store::EventStore::new(app.db.app_pool(1).await);
    let tenant = event_store::TenantId::parse("acme").unwrap();
    let mut tx = store.begin(&tenant).await.unwrap();
    let customers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id LIKE 'customer-%'")
            .fetch_one(tx.connection())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(customers, 2);
}
