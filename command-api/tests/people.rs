//! Tenants and people: user administration, refresh tokens, tenant-defined roles,
//! self-service sign-up (with a failure halfway and its compensation) and the tenant named
//! by host, each through the HTTP API of a real server.

use std::time::Duration;

use command_api::testing::{PASSWORD, Reply, TestApp, TestIndices};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use service::eventually;
use sha2::{Digest, Sha256};

const NEW_PASSWORD: &str = "an entirely new password";

async fn login_reply(app: &TestApp, tenant: &str, username: &str, password: &str) -> Reply {
    app.login(Some(tenant), username, password).await
}

async fn refresh_reply(app: &TestApp, token: String) -> Reply {
    app.send(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": token})),
        &[],
    )
    .await
}

async fn define(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/v1/roles", token, body).await
}

async fn user_id(app: &TestApp, admin: &str, username: &str) -> String {
    let page = app.get("/v1/users?limit=100", admin).await;
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("{username} in {:?}", page.body))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn users_are_listed_read_and_changed_and_every_change_is_an_event() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    for name in ["bea", "cid", "dee"] {
        app.user("acme", &admin, name, "member").await;
    }

    // Pages by username.
    let first = app.get("/v1/users?limit=2", &admin).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let names: Vec<&str> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-admin", "bea"]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/v1/users?limit=2&cursor={cursor}"), &admin)
        .await;
    let names: Vec<&str> = second.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cid", "dee"]);
    assert!(
        second.body.get("next_cursor").is_none(),
        "{:?}",
        second.body
    );
    let bad = app.get("/v1/users?cursor=%%%", &admin).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let bea = user_id(&app, &admin, "bea").await;
    let read = app.get(&format!("/v1/users/{bea}"), &admin).await;
    assert_eq!(read.body["role"], "member");
    assert_eq!(read.body["active"], true);

    let changed = app
        .patch(
            &format!("/v1/users/{bea}"),
            &admin,
            json!({"display_name": "Bea Arthur", "role": "viewer"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["role"], "viewer");
    assert_eq!(changed.body["display_name"], "Bea Arthur");
    let unknown_role = app
        .patch(
            &format!("/v1/users/{bea}"),
            &admin,
            json!({"role": "wizard"}),
        )
        .await;
    assert_eq!(unknown_role.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown_role.error_fields(), vec!["role"]);

    // The audit trail: who changed whose role, from what to what.
    let events = app.stream("acme", &format!("user-{bea}")).await;
    let updated = events
        .iter()
        .find(|e| e.event_type == "UserUpdated")
        .expect("a UserUpdated event");
    assert_eq!(updated.payload["role"], "viewer");
    assert_eq!(updated.payload["previous_role"], "member");
    assert_eq!(updated.metadata.actor_name, "Admin");

    // A member may read themselves, not others, and cannot administer.
    let cid = user_id(&app, &admin, "cid").await;
    let cid_token = app.token(Some("acme"), "cid", PASSWORD).await;
    let own = app.get(&format!("/v1/users/{cid}"), &cid_token).await;
    assert_eq!(own.status, StatusCode::OK);
    let other = app.get(&format!("/v1/users/{bea}"), &cid_token).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/v1/users", &cid_token).await.status,
        StatusCode::FORBIDDEN
    );

    // Another tenant's user is not there at all.
    let globex = app.tenant_with_admin("globex").await;
    assert_eq!(
        app.get(&format!("/v1/users/{bea}"), &globex).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_deactivated_user_is_refused_on_every_instance_within_a_second() {
    let app = TestApp::spawn().await;
    let other_instance = app.second_instance().await;
    let admin = app.tenant_with_admin("acme").await;
    let token = app.user("acme", &admin, "leaver", "member").await;
    let leaver = user_id(&app, &admin, "leaver").await;
    assert_eq!(
        other_instance.get("/v1/customers", &token).await.status,
        StatusCode::OK
    );

    let deactivated = app
        .send(
            Method::POST,
            &format!("/v1/users/{leaver}/deactivate"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK, "{:?}", deactivated.body);
    assert_eq!(deactivated.body["active"], false);
    let (elsewhere, used) = (&other_instance, &token);
    eventually(Duration::from_secs(1), || async move {
        match elsewhere.get("/v1/customers", used).await.status {
            StatusCode::UNAUTHORIZED => Ok(()),
            other => Err(other),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the other instance still accepts a deactivated user's token after 1 s: last {last}")
    });
    let login = login_reply(&app, "acme", "leaver", PASSWORD).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN, "{:?}", login.body);

    let reactivated = app
        .send(
            Method::POST,
            &format!("/v1/users/{leaver}/reactivate"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(reactivated.body["active"], true);
    let login = login_reply(&app, "acme", "leaver", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    // The old token stays ended: deactivation ended every session of the user.
    assert_eq!(
        app.get("/v1/customers", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let events: Vec<String> = app
        .stream("acme", &format!("user-{leaver}"))
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        events,
        ["UserRegistered", "UserDeactivated", "UserReactivated"]
    );
}

#[tokio::test]
async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let me = user_id(&app, &admin, "acme-admin").await;
    let demote = |token: String, id: String| {
        let app = &app;
        async move {
            app.patch(
                &format!("/v1/users/{id}"),
                &token,
                json!({"role": "member"}),
            )
            .await
        }
    };
    assert_eq!(
        demote(admin.clone(), me.clone()).await.status,
        StatusCode::CONFLICT
    );
    let deactivate = app
        .send(
            Method::POST,
            &format!("/v1/users/{me}/deactivate"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(deactivate.status, StatusCode::CONFLICT);

    // With a second admin, either may go, but not both: the two demotions race, one wins.
    // The loser is refused by the last-admin rule (409), or, when the winner demoted it
    // first, because it is no longer an admin (403).
    let second = app.user("acme", &admin, "second-admin", "admin").await;
    let second_id = user_id(&app, &admin, "second-admin").await;
    let (a, b) = tokio::join!(
        demote(admin.clone(), second_id.clone()),
        demote(second.clone(), me.clone())
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count() == 1
            && statuses
                .iter()
                .any(|s| [StatusCode::CONFLICT, StatusCode::FORBIDDEN].contains(s)),
        "{statuses:?}: {:?} {:?}",
        a.body,
        b.body
    );
    let survivor = if a.status == StatusCode::OK {
        &admin
    } else {
        &second
    };
    let users = app.get("/v1/users", survivor).await;
    let admins = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "admin" && u["active"] == true)
        .count();
    assert_eq!(admins, 1, "{:?}", users.body);
}

#[tokio::test]
async fn a_password_change_needs_the_old_one_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    app.user("acme", &admin, "pat", "member").await;
    let login = login_reply(&app, "acme", "pat", PASSWORD).await;
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    let refresh = login.body["refresh_token"].as_str().unwrap().to_owned();

    let wrong = app
        .post(
            "/v1/auth/password",
            &token,
            json!({"old_password": "not the password", "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.error_fields(), vec!["old_password"]);
    let weak = app
        .post(
            "/v1/auth/password",
            &token,
            json!({"old_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(weak.error_fields(), vec!["new_password"]);

    // Tokens carry whole seconds: a change in the same second as the login would let it be.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let changed = app
        .post(
            "/v1/auth/password",
            &token,
            json!({"old_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{:?}", changed.body);
    assert_eq!(
        app.get("/v1/customers", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refreshed = refresh_reply(&app, refresh).await;
    assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_reply(&app, "acme", "pat", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = app.token(Some("acme"), "pat", NEW_PASSWORD).await;

    // An admin's reset does the same.
    let pat = user_id(&app, &admin, "pat").await;
    // A second after `fresh` was issued, as above: the reset must end it, not share its second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let reset = app
        .post(
            &format!("/v1/users/{pat}/password"),
            &admin,
            json!({"new_password": PASSWORD}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{:?}", reset.body);
    assert_eq!(
        app.get("/v1/customers", &fresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.token(Some("acme"), "pat", PASSWORD).await;
    let events: Vec<Value> = app
        .stream("acme", &format!("user-{pat}"))
        .await
        .into_iter()
        .filter(|e| e.event_type == "UserPasswordChanged")
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        events,
        [
            json!({"reset_by_admin": false}),
            json!({"reset_by_admin": true})
        ],
        "no password or hash in the events"
    );
}

#[tokio::test]
async fn an_admin_cannot_reset_their_own_password_without_the_old_one() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let own = user_id(&app, &admin, "acme-admin").await;
    let reset = app
        .post(
            &format!("/v1/users/{own}/password"),
            &admin,
            json!({"new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::FORBIDDEN, "{:?}", reset.body);
    assert_eq!(
        reset.header("content-type"),
        Some("application/problem+json")
    );
    assert!(
        reset.body["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/auth/password"),
        "{:?}",
        reset.body
    );
    // Nothing changed: the old password still logs in, the token still works.
    assert_eq!(
        app.get("/v1/customers", &admin).await.status,
        StatusCode::OK
    );
    assert_eq!(
        login_reply(&app, "acme", "acme-admin", PASSWORD)
            .await
            .status,
        StatusCode::OK
    );
    // The positive control: the same admin resets someone else's.
    app.user("acme", &admin, "pia", "member").await;
    let pia = user_id(&app, &admin, "pia").await;
    let other = app
        .post(
            &format!("/v1/users/{pia}/password"),
            &admin,
            json!({"new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(other.status, StatusCode::NO_CONTENT, "{:?}", other.body);
    // And the description says so.
    let doc = app
        .send(Method::GET, "/openapi.json", None, None, &[])
        .await;
    let forbidden = &doc.body["paths"]["/v1/users/{id}/password"]["post"]["responses"]["403"];
    assert!(
        forbidden["description"]
            .as_str()
            .is_some_and(|d| d.contains("/v1/auth/password")),
        "{forbidden:?}"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_its_whole_family() {
    let app = TestApp::spawn().await;
    let other_instance = app.second_instance().await;
    let admin = app.tenant_with_admin("acme").await;
    app.user("acme", &admin, "rita", "member").await;
    let login = login_reply(&app, "acme", "rita", PASSWORD).await;
    let window = login.body["refresh_expires_in"].as_u64().unwrap();
    assert!(
        (30 * 24 * 3_600 - 5..=30 * 24 * 3_600).contains(&window),
        "{window}"
    );
    let first = login.body["refresh_token"].as_str().unwrap().to_owned();

    // Stored only as its SHA-256.
    let mut owner = app.db.owner_connection().await;
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_all(&mut owner)
        .await
        .unwrap();
    let digest = Sha256::digest(first.as_bytes()).to_vec();
    assert!(hashes.contains(&digest));
    assert!(!hashes.iter().any(|h| h.as_slice() == first.as_bytes()));

    let refresh = |token: String| refresh_reply(&app, token);
    let rotated = refresh(first.clone()).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let second = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    let access = rotated.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(
        app.get("/v1/customers", &access).await.status,
        StatusCode::OK
    );

    // The first token again: someone else has it. The whole family ends, the successor and
    // the access tokens issued from it included, on every instance.
    let stolen = refresh(first).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(second).await.status, StatusCode::UNAUTHORIZED);
    let (elsewhere, used) = (&other_instance, &access);
    eventually(Duration::from_secs(1), || async move {
        match elsewhere.get("/v1/customers", used).await.status {
            StatusCode::UNAUTHORIZED => Ok(()),
            other => Err(other),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("an access token of an ended family still works elsewhere after 1 s: last {last}")
    });

    // Logout ends the family too.
    let login = login_reply(&app, "acme", "rita", PASSWORD).await;
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    let out = app
        .send(Method::POST, "/v1/auth/logout", Some(&token), None, &[])
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh(refresh_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh("crt_not-a-token".to_owned()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn no_refresh_token_outlives_a_session_ended_while_it_was_being_refreshed() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let first = app.user("acme", &admin, "ruth", "member").await;
    let logout = app
        .send(Method::POST, "/v1/auth/logout", Some(&first), None, &[])
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let refresh = |token: String| refresh_reply(&app, token);
    // The refresh and the logout race; whichever wins, no refresh token is left alive.
    for _ in 0..12 {
        let login = login_reply(&app, "acme", "ruth", PASSWORD).await;
        let access = login.body["access_token"].as_str().unwrap().to_owned();
        let token = login.body["refresh_token"].as_str().unwrap().to_owned();
        let (refreshed, logout) = tokio::join!(
            refresh(token),
            app.send(Method::POST, "/v1/auth/logout", Some(&access), None, &[])
        );
        assert_eq!(logout.status, StatusCode::NO_CONTENT, "{:?}", logout.body);
        if refreshed.status == StatusCode::OK {
            let next = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
            assert_eq!(
                refresh(next).await.status,
                StatusCode::UNAUTHORIZED,
                "a refresh token outlived its session's logout"
            );
        } else {
            assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
        }
    }
    let ruth = uuid::Uuid::parse_str(&user_id(&app, &admin, "ruth").await).unwrap();
    let mut owner = app.db.owner_connection().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE user_id = $1")
        .bind(ruth)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(left, 0, "refresh tokens left after every session ended");
}

#[tokio::test]
async fn an_unused_refresh_token_expires_after_its_window() {
    let app = TestApp::spawn_with(|config| config.refresh_window_secs = 2).await;
    let admin = app.tenant_with_admin("acme").await;
    app.user("acme", &admin, "idle", "member").await;
    let login = login_reply(&app, "acme", "idle", PASSWORD).await;
    let token = login.body["refresh_token"].as_str().unwrap().to_owned();
    // The positive control: within the window a refresh works (and starts a new window),
    // so the 401 below is the expiry's, not a refresh that never works.
    let used = refresh_reply(&app, token).await;
    assert_eq!(used.status, StatusCode::OK, "{:?}", used.body);
    let window = used.body["refresh_expires_in"].as_u64().unwrap();
    assert!((1..=2).contains(&window), "{window}");
    let next = used.body["refresh_token"].as_str().unwrap().to_owned();
    // The scenario itself: the token lies unused until its window (at most 2 s) has passed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let expired = refresh_reply(&app, next).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
}

/// A user (and, with `new_tenant`, their tenant) set up on another instance a moment ago,
/// with a session: in the database, not yet in this instance's registries (the change
/// notifications that would tell it are held back). Returns the session's refresh token.
async fn session_made_elsewhere(app: &TestApp, tenant: &str, new_tenant: bool) -> String {
    use sqlx::Connection;
    let user = uuid::Uuid::now_v7();
    let token = format!("crt_{}", user.simple());
    let mut owner = app.db.owner_connection().await;
    let mut tx = owner.begin().await.unwrap();
    let triggers = |verb: &str| {
        [
            format!("ALTER TABLE tenants {verb} TRIGGER tenant_changed"),
            format!("ALTER TABLE users {verb} TRIGGER user_changed"),
        ]
    };
    for statement in triggers("DISABLE") {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    if new_tenant {
        sqlx::query("INSERT INTO tenants (id, name, status) VALUES ($1, $1, 'active')")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (tenant_id, user_id, username, display_name, role, password_hash)
         VALUES ($1, $2, 'newcomer', 'Newcomer', 'member', 'no password')",
    )
    .bind(tenant)
    .bind(user)
    .execute(&mut *tx)
    .await
    .unwrap();
    for statement in triggers("ENABLE") {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at)
         VALUES ($1, $2, $2, now() + interval '1 hour')",
    )
    .bind(Sha256::digest(token.as_bytes()).to_vec())
    .bind(user)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    token
}

/// Refreshes twice in a row from `token`, each answered 200; returns the last refresh token.
async fn refreshes_twice(app: &TestApp, token: String) -> String {
    let mut token = token;
    for _ in 0..2 {
        let refreshed = refresh_reply(app, token).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
        token = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
    }
    token
}

#[tokio::test]
async fn a_refresh_keeps_the_session_of_a_user_this_instance_does_not_know_yet() {
    let app = TestApp::spawn().await;
    app.tenant_with_admin("acme").await;
    let token = session_made_elsewhere(&app, "acme", false).await;
    refreshes_twice(&app, token).await;
}

#[tokio::test]
async fn a_refresh_keeps_the_session_of_a_tenant_this_instance_does_not_know_yet() {
    let app = TestApp::spawn().await;
    let token = session_made_elsewhere(&app, "newco", true).await;
    let token = refreshes_twice(&app, token).await;

    // Suspended, as the database says: refused, and nothing of the session is spent.
    let mut owner = app.db.owner_connection().await;
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = 'newco'")
        .execute(&mut owner)
        .await
        .unwrap();
    let spent = "SELECT count(*) FROM refresh_tokens WHERE spent_at IS NOT NULL";
    let spent_before: i64 = sqlx::query_scalar(spent)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    let refused = refresh_reply(&app, token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let spent_after: i64 = sqlx::query_scalar(spent)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(
        spent_before, spent_after,
        "a refused refresh spends nothing"
    );
}

#[tokio::test]
async fn ended_sessions_and_revoked_tokens_are_purged_by_the_api_role() {
    let db = event_store::testing::ScratchDatabase::create().await;
    let mut owner = db.owner_connection().await;
    for (id, from_now) in [
        (uuid::Uuid::now_v7(), "-1 minute"),
        (uuid::Uuid::now_v7(), "1 hour"),
    ] {
        sqlx::query(
            "INSERT INTO revoked_sessions (family_id, expires_at, reason)
             VALUES ($1, now() + $2::text::interval, 'logout')",
        )
        .bind(id)
        .bind(from_now)
        .execute(&mut owner)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, now() + $2::text::interval)",
        )
        .bind(id)
        .bind(from_now)
        .execute(&mut owner)
        .await
        .unwrap();
    }
    // As the API runs it: the application's role, not the owner.
    let pool = sqlx::PgPool::connect(&db.app_url()).await.unwrap();
    let sessions = command_api::auth::sessions::Sessions {
        window: chrono::Duration::days(30),
        access_lifetime: chrono::Duration::minutes(15),
    };
    let purged = sessions
        .purge(&pool)
        .await
        .expect("the purge runs as the API");
    assert_eq!(purged, 2, "one ended session and one revoked token");
    for (table, count) in [
        (
            "revoked_sessions",
            "SELECT count(*), count(*) FILTER (WHERE expires_at < now()) FROM revoked_sessions",
        ),
        (
            "revoked_tokens",
            "SELECT count(*), count(*) FILTER (WHERE expires_at < now()) FROM revoked_tokens",
        ),
    ] {
        let (left, expired): (i64, i64) =
            sqlx::query_as(count).fetch_one(&mut owner).await.unwrap();
        assert_eq!(
            (left, expired),
            (1, 0),
            "{table}: the live row stays, the expired goes"
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn tenant_roles_grant_only_what_the_granter_holds_and_apply_within_a_second() {
    let app = TestApp::spawn().await;
    let other_instance = app.second_instance().await;
    let admin = app.tenant_with_admin("acme").await;

    let roles = app.get("/v1/roles", &admin).await;
    let builtins: Vec<&str> = roles.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtins, ["admin", "member", "viewer"]);

    let made = define(
        &app,
        &admin,
        json!({"name": "user-manager", "permissions": ["users:manage", "customers:read"]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(
        define(&app, &admin, json!({"name": "viewer", "permissions": []}))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let unknown = define(
        &app,
        &admin,
        json!({"name": "x-role", "permissions": ["moon:land"]}),
    )
    .await;
    assert_eq!(unknown.error_fields(), vec!["permissions[0]"]);
    assert_eq!(
        define(
            &app,
            &admin,
            json!({"name": "user-manager", "permissions": []})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );

    // A user manager administers users, within what they hold.
    let manager = app.user("acme", &admin, "manny", "user-manager").await;
    let admin_id = user_id(&app, &admin, "acme-admin").await;
    let escalate = app
        .post(
            "/v1/users",
            &manager,
            json!({"username": "crony", "password": PASSWORD, "display_name": "Crony", "role": "admin"}),
        )
        .await;
    assert_eq!(
        escalate.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        escalate.body
    );
    let allowed = app
        .post(
            "/v1/users",
            &manager,
            json!({"username": "reader", "password": PASSWORD, "display_name": "Reader", "role": "viewer"}),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{:?}", allowed.body);
    let takeover = app
        .post(
            &format!("/v1/users/{admin_id}/password"),
            &manager,
            json!({"new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(takeover.status, StatusCode::FORBIDDEN);
    let demote_admin = app
        .patch(
            &format!("/v1/users/{admin_id}"),
            &manager,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demote_admin.status, StatusCode::FORBIDDEN);
    // Roles need `roles:manage`, which a user manager does not hold.
    let no_roles = define(
        &app,
        &manager,
        json!({"name": "mine", "permissions": ["customers:read"]}),
    )
    .await;
    assert_eq!(no_roles.status, StatusCode::FORBIDDEN);
    // And a user manager cannot write customers.
    let write = app
        .post(
            "/v1/customers",
            &manager,
            json!({"name": "X", "email": "x@example.com"}),
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert!(
        write.body["detail"]
            .as_str()
            .unwrap()
            .contains("customers:write")
    );

    // Giving the role a permission applies to its holders' existing tokens, everywhere.
    let changed = app
        .patch(
            "/v1/roles/user-manager",
            &admin,
            json!({"permissions": ["users:manage", "customers:read", "customers:write"]}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    let (elsewhere, used) = (&other_instance, &manager);
    eventually(Duration::from_secs(1), || async move {
        let reply = elsewhere
            .post(
                "/v1/customers",
                used,
                json!({"name": "Y", "email": "y@example.com"}),
            )
            .await;
        match reply.status {
            StatusCode::CREATED => Ok(()),
            _ => Err(reply),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the role's new permission did not apply within 1 s: last {last:?}")
    });

    assert_eq!(
        app.patch("/v1/roles/admin", &admin, json!({"permissions": []}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(
            Method::DELETE,
            "/v1/roles/user-manager",
            Some(&admin),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    define(
        &app,
        &admin,
        json!({"name": "unused", "permissions": ["audit:read"]}),
    )
    .await;
    assert_eq!(
        app.send(Method::DELETE, "/v1/roles/unused", Some(&admin), None, &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send(Method::DELETE, "/v1/roles/unused", Some(&admin), None, &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let events: Vec<String> = app
        .stream("acme", "tenant-acme")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        events,
        [
            "TenantRegistered",
            "TenantActivated",
            "RoleDefined",
            "RoleChanged",
            "RoleDefined",
            "RoleRemoved"
        ]
    );
}

#[tokio::test]
async fn a_role_is_granted_as_its_row_says_not_as_this_instance_last_heard() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let made = define(
        &app,
        &admin,
        json!({"name": "user-manager", "permissions": ["users:manage", "customers:read"]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let made = define(
        &app,
        &admin,
        json!({"name": "support", "permissions": ["customers:read"]}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let manager = app.user("acme", &admin, "manny", "user-manager").await;
    // The positive control: while `support` is within what the manager holds, they grant it.
    app.user("acme", &manager, "first", "support").await;

    // Another instance widens `support` this very moment: the row says so, this
    // instance has not heard yet (the notification is held back).
    let mut owner = app.db.owner_connection().await;
    let mut tx = owner.begin().await.unwrap();
    for statement in [
        "ALTER TABLE roles DISABLE TRIGGER roles_changed",
        "SELECT set_config('app.tenant_id', 'acme', true)",
        "UPDATE roles SET permissions = ARRAY['customers:read', 'customers:erase']
         WHERE tenant_id = 'acme' AND name = 'support'",
        "ALTER TABLE roles ENABLE TRIGGER roles_changed",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    let escalate = app
        .post(
            "/v1/users",
            &manager,
            json!({"username": "crony", "password": PASSWORD, "display_name": "Crony", "role": "support"}),
        )
        .await;
    assert_eq!(
        escalate.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        escalate.body
    );
    let first = user_id(&app, &admin, "first").await;
    let demote = app
        .patch(
            &format!("/v1/users/{first}"),
            &manager,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(
        demote.status,
        StatusCode::FORBIDDEN,
        "a user of a role now above the manager: {:?}",
        demote.body
    );
}

/// An index named as the tenant's alias will be: making the alias fails, for real.
async fn block_aliases(indices: &TestIndices, tenant: &str) -> (read_model::Es, String) {
    let es = read_model::Es::new(&indices.url).unwrap();
    let name = format!("{}-customers-{tenant}", indices.prefix);
    es.request(
        read_model::es::Method::Put,
        &format!("/{name}"),
        Some(json!({})),
        &[],
    )
    .await
    .unwrap();
    (es, name)
}

#[tokio::test]
async fn signup_sets_a_tenant_up_and_a_failure_halfway_leaves_nothing_that_can_log_in() {
    let closed = TestApp::spawn().await;
    let body = json!({"id": "beta", "name": "Beta", "admin": {"username": "boss", "password": PASSWORD, "display_name": "Boss"}});
    let refused = closed
        .send(Method::POST, "/v1/signup", None, Some(body.clone()), &[])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    drop(closed);

    let indices = TestIndices::create("signup").await;
    let prefix = indices.prefix.clone();
    let app = TestApp::spawn_with(|config| {
        config.signup = "open".to_owned();
        config.index_prefix = prefix;
    })
    .await;

    // Halfway: the registry, the admin and the events are written, the aliases are not.
    let (es, blocker) = block_aliases(&indices, "beta").await;
    let key = [("idempotency-key", "signup-beta-1")];
    let first = app
        .send(Method::POST, "/v1/signup", None, Some(body.clone()), &key)
        .await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        first.body
    );
    assert!(first.header("retry-after").is_some());
    assert_eq!(
        login_reply(&app, "beta", "boss", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let platform = app.platform_token().await;
    assert_eq!(
        app.get("/v1/tenants/beta", &platform).await.body["status"],
        "pending"
    );
    // Another request for the pending id is refused, not merged into it.
    let mut other = body.clone();
    other["name"] = json!("Someone else's Beta");
    let conflicting = app
        .send(Method::POST, "/v1/signup", None, Some(other), &[])
        .await;
    assert_eq!(
        conflicting.status,
        StatusCode::CONFLICT,
        "{:?}",
        conflicting.body
    );

    // The cause goes away; the same request completes it.
    es.request(
        read_model::es::Method::Delete,
        &format!("/{blocker}"),
        None,
        &[],
    )
    .await
    .unwrap();
    let retried = app
        .send(Method::POST, "/v1/signup", None, Some(body.clone()), &key)
        .await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.body);
    assert_eq!(retried.body["status"], "active");
    assert_eq!(
        login_reply(&app, "beta", "boss", PASSWORD).await.status,
        StatusCode::OK
    );
    let replayed = app
        .send(Method::POST, "/v1/signup", None, Some(body.clone()), &key)
        .await;
    assert_eq!(replayed.status, StatusCode::CREATED);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    let again = app
        .send(Method::POST, "/v1/signup", None, Some(body), &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let events: Vec<String> = app
        .stream("beta", "tenant-beta")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(events, ["TenantRegistered", "TenantActivated"]);
    let aliases = es
        .request(
            read_model::es::Method::Get,
            &format!("/_alias/{}-customers-beta", indices.prefix),
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(aliases.0, 200, "{:?}", aliases.1);
}

#[tokio::test]
async fn a_signup_nobody_finishes_is_taken_back_and_its_id_is_free_again() {
    let indices = TestIndices::create("abandon").await;
    let prefix = indices.prefix.clone();
    let app = TestApp::spawn_with(|config| {
        config.signup = "open".to_owned();
        config.index_prefix = prefix;
        config.signup_pending_timeout_secs = 1;
        config.housekeeping_interval_secs = 1;
    })
    .await;
    let (es, blocker) = block_aliases(&indices, "gamma").await;
    let body = json!({"id": "gamma", "name": "Gamma", "admin": {"username": "gia", "password": PASSWORD, "display_name": "Gia"}});
    let halfway = app
        .send(Method::POST, "/v1/signup", None, Some(body.clone()), &[])
        .await;
    assert_eq!(halfway.status, StatusCode::SERVICE_UNAVAILABLE);

    let platform = app.platform_token().await;
    let (api, used) = (&app, &platform);
    eventually(Duration::from_secs(15), || async move {
        let reply = api.get("/v1/tenants/gamma", used).await;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(reply),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the unfinished tenant was not taken back within 15 s: last {last:?}")
    });
    let events: Vec<String> = app
        .stream("gamma", "tenant-gamma")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(events, ["TenantRegistered", "TenantSignupAbandoned"]);

    es.request(
        read_model::es::Method::Delete,
        &format!("/{blocker}"),
        None,
        &[],
    )
    .await
    .unwrap();
    let fresh = app
        .send(Method::POST, "/v1/signup", None, Some(body), &[])
        .await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{:?}", fresh.body);
    assert_eq!(
        login_reply(&app, "gamma", "gia", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn signups_are_rate_limited_per_client_network() {
    let indices = TestIndices::create("signup-limit").await;
    let prefix = indices.prefix.clone();
    let app = TestApp::spawn_with(|config| {
        config.signup = "open".to_owned();
        config.index_prefix = prefix;
        config.signup_per_address_per_hour = 2;
    })
    .await;
    for (n, expected) in [
        (1, StatusCode::CREATED),
        (2, StatusCode::CREATED),
        (3, StatusCode::TOO_MANY_REQUESTS),
    ] {
        let reply = app
            .send(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"id": format!("t{n}-co"), "name": "Co", "admin": {"username": "boss", "password": PASSWORD, "display_name": "Boss"}})),
                &[],
            )
            .await;
        assert_eq!(reply.status, expected, "{:?}", reply.body);
        if expected == StatusCode::TOO_MANY_REQUESTS {
            assert!(reply.header("retry-after").is_some());
        }
    }
}

#[tokio::test]
async fn the_tenant_of_a_login_or_signup_may_be_named_by_host_or_header() {
    let indices = TestIndices::create("by-host").await;
    let prefix = indices.prefix.clone();
    let app = TestApp::spawn_with(|config| {
        config.signup = "open".to_owned();
        config.index_prefix = prefix;
        config.base_domain = "example.test".to_owned();
    })
    .await;
    // Sign-up by host: no id in the body.
    let signed_up = app
        .send(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"name": "Delta", "admin": {"username": "dora", "password": PASSWORD, "display_name": "Dora"}})),
            &[("host", "delta.example.test")],
        )
        .await;
    assert_eq!(
        signed_up.status,
        StatusCode::CREATED,
        "{:?}",
        signed_up.body
    );
    assert_eq!(signed_up.body["id"], "delta");

    let login = |headers: &'static [(&'static str, &'static str)], body: Value| {
        let app = &app;
        async move {
            app.send(Method::POST, "/v1/auth/token", None, Some(body), headers)
                .await
        }
    };
    let by_host = login(
        &[("host", "delta.example.test")],
        json!({"username": "dora", "password": PASSWORD}),
    )
    .await;
    assert_eq!(by_host.status, StatusCode::OK, "{:?}", by_host.body);
    let by_header = login(
        &[("x-tenant-id", "delta")],
        json!({"username": "dora", "password": PASSWORD}),
    )
    .await;
    assert_eq!(by_header.status, StatusCode::OK);
    let disagreeing = login(
        &[("host", "other.example.test")],
        json!({"tenant": "delta", "username": "dora", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        disagreeing.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        disagreeing.body
    );

    // Once logged in the token decides: a host naming another tenant is 403.
    let token = by_host.body["access_token"].as_str().unwrap().to_owned();
    let elsewhere = app
        .send(
            Method::GET,
            "/v1/customers",
            Some(&token),
            None,
            &[("host", "other.example.test")],
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    let same = app
        .send(
            Method::GET,
            "/v1/customers",
            Some(&token),
            None,
            &[("host", "delta.example.test")],
        )
        .await;
    assert_eq!(same.status, StatusCode::OK);
}
