//! Authentication: logins, and a set of forged and stale tokens that must all be refused.

use std::time::Instant;

use base64::Engine;
use command_api::testing::{PASSWORD, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims as the API issues them for `tenant`'s admin, adjusted by `change`.
fn claims(tenant: &str, change: impl FnOnce(&mut Value)) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": uuid::Uuid::now_v7(), "name": "Mallory", "tenant": tenant, "role": "admin",
        "iat": now, "nbf": now, "exp": now + 600, "iss": "chronicle", "aud": "chronicle-api",
        "jti": uuid::Uuid::now_v7(),
    });
    change(&mut claims);
    claims
}

fn signed(app: &TestApp, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(&app.private_key_pem()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_valid_login_gets_a_short_lived_bearer_token() {
    let app = TestApp::spawn().await;
    app.tenant_with_admin("acme").await;
    let reply = app.login(Some("acme"), "acme-admin", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    let token = reply.body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some("test-key"));

    // Usernames are case-insensitive.
    assert_eq!(
        app.login(Some("acme"), "ACME-Admin", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_tenant_user_or_password_look_the_same() {
    let app = TestApp::spawn().await;
    app.tenant_with_admin("acme").await;
    let attempts = [
        (Some("nosuch"), "acme-admin", PASSWORD),
        (Some("acme"), "nobody", PASSWORD),
        (Some("acme"), "acme-admin", "wrong password!"),
        (None, "acme-admin", PASSWORD),
    ];
    let mut bodies = Vec::new();
    let mut timings = Vec::new();
    for (tenant, user, password) in attempts {
        let started = Instant::now();
        let reply = app.login(tenant, user, password).await;
        timings.push(started.elapsed());
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{tenant:?} {user}");
        bodies.push(reply.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the 401 bodies differ: {bodies:?}"
    );
    // Every attempt, found or not, checked a password: none is an order of magnitude faster.
    let slowest = timings.iter().max().unwrap().as_secs_f64();
    let fastest = timings.iter().min().unwrap().as_secs_f64();
    assert!(
        fastest > slowest / 10.0,
        "a miss answered suspiciously fast: {timings:?}"
    );
}

#[tokio::test]
async fn logins_are_rate_limited_per_account() {
    let app = TestApp::spawn_with(|config| config.login_per_account_per_minute = 3).await;
    app.tenant_with_admin("acme").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.login(Some("acme"), "mallory", "guess number n").await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .expect("a 429");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(
        statuses
            .iter()
            .filter(|r| r.status == StatusCode::UNAUTHORIZED)
            .count(),
        3
    );
    // Another account is not limited by this one's attempts.
    assert_eq!(
        app.login(Some("acme"), "acme-admin", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forged_stale_and_revoked_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    let now = chrono::Utc::now().timestamp();

    // Tokens name a user the directory knows: forge one for the real admin.
    let admin_sub = {
        let payload = admin.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["sub"].clone()
    };
    let genuine = signed(
        &app,
        "test-key",
        &claims("acme", |c| c["sub"] = admin_sub.clone()),
    );
    assert_eq!(
        app.get("/v1/users", &genuine).await.status,
        StatusCode::OK,
        "the control token works"
    );
    // Well signed, but for nobody the tenant has: refused.
    let nobody = signed(&app, "test-key", &claims("acme", |_| {}));
    assert_eq!(
        app.get("/v1/users", &nobody).await.status,
        StatusCode::UNAUTHORIZED
    );

    let header_b64 = |header: Value| b64(header.to_string().as_bytes());
    let mut forged: Vec<(&str, String)> = Vec::new();
    forged.push((
        "alg none",
        format!(
            "{}.{}.",
            header_b64(json!({"alg": "none", "typ": "JWT", "kid": "test-key"})),
            b64(claims("acme", |_| {}).to_string().as_bytes())
        ),
    ));
    for (what, secret) in [
        ("HS256 with a guessed secret", b"secret".to_vec()),
        ("HS256 keyed with the public key", app.public_key_pem()),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key".to_owned());
        forged.push((
            what,
            encode(
                &header,
                &claims("acme", |_| {}),
                &EncodingKey::from_secret(&secret),
            )
            .unwrap(),
        ));
    }
    let tampered = {
        let parts: Vec<&str> = genuine.split('.').collect();
        // The genuine header and signature around another tenant's claims.
        let elevated = claims("globex", |_| {});
        format!(
            "{}.{}.{}",
            parts[0],
            b64(elevated.to_string().as_bytes()),
            parts[2]
        )
    };
    forged.push(("tampered claims", tampered));
    forged.push((
        "expired",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| {
                c["exp"] = json!(now - 120);
                c["iat"] = json!(now - 1000);
                c["nbf"] = json!(now - 1000);
            }),
        ),
    ));
    forged.push((
        "not yet valid",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| c["nbf"] = json!(now + 600)),
        ),
    ));
    forged.push((
        "missing iss",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
    ));
    forged.push((
        "wrong iss",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| c["iss"] = json!("evil")),
        ),
    ));
    forged.push((
        "missing aud",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
    ));
    forged.push((
        "wrong aud",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| c["aud"] = json!("another-api")),
        ),
    ));
    forged.push((
        "missing exp",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
    ));
    forged.push((
        "missing sub",
        signed(
            &app,
            "test-key",
            &claims("acme", |c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
    ));
    forged.push((
        "unknown kid",
        signed(&app, "other-key", &claims("acme", |_| {})),
    ));
    let mut no_kid = Header::new(Algorithm::EdDSA);
    no_kid.kid = None;
    forged.push((
        "no kid",
        encode(
            &no_kid,
            &claims("acme", |_| {}),
            &EncodingKey::from_ed_pem(&app.private_key_pem()).unwrap(),
        )
        .unwrap(),
    ));
    let (stranger_key, _) = command_api::auth::keys::generate_ed25519();
    let mut stranger = Header::new(Algorithm::EdDSA);
    stranger.kid = Some("test-key".to_owned());
    forged.push((
        "signed by another key under our kid",
        encode(
            &stranger,
            &claims("acme", |_| {}),
            &EncodingKey::from_ed_pem(stranger_key.as_bytes()).unwrap(),
        )
        .unwrap(),
    ));
    forged.push(("garbage", "not.a.token".to_owned()));

    for (what, token) in &forged {
        let reply = app.get("/v1/users", token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what} was accepted: {:?}",
            reply.body
        );
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }

    // Revoked: log out, and the same token stops working.
    assert_eq!(app.get("/v1/users", &admin).await.status, StatusCode::OK);
    let logout = app
        .send(
            reqwest::Method::POST,
            "/v1/auth/logout",
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/users", &admin).await.status,
        StatusCode::UNAUTHORIZED,
        "revoked jti accepted"
    );

    // A platform admin revokes someone else's token by jti.
    let victim = app.token(Some("acme"), "acme-admin", PASSWORD).await;
    let jti = jsonwebtoken::dangerous::insecure_decode::<Value>(&victim)
        .unwrap()
        .claims["jti"]
        .clone();
    let platform = app.platform_token().await;
    let revoked = app
        .post("/v1/auth/revoke", &platform, json!({"jti": jti}))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/v1/users", &victim).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn revocation_reaches_every_instance() {
    let first = TestApp::spawn().await;
    let second = first.second_instance().await;
    let admin = first.tenant_with_admin("acme").await;
    assert_eq!(second.get("/v1/users", &admin).await.status, StatusCode::OK);
    first
        .send(
            reqwest::Method::POST,
            "/v1/auth/logout",
            Some(&admin),
            None,
            &[],
        )
        .await;
    service::eventually(std::time::Duration::from_secs(1), || async {
        match second.get("/v1/users", &admin).await.status {
            StatusCode::UNAUTHORIZED => Ok(()),
            other => Err(other),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!("the second instance still accepts the revoked token after 1 s: last {last}")
    });
}

#[tokio::test]
async fn the_token_decides_the_tenant() {
    let app = TestApp::spawn().await;
    let admin = app.tenant_with_admin("acme").await;
    app.tenant_with_admin("globex").await;

    let no_token = app
        .send(reqwest::Method::GET, "/v1/users", None, None, &[])
        .await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    let matching = app
        .send(
            reqwest::Method::GET,
            "/v1/users",
            Some(&admin),
            None,
            &[("x-tenant-id", "acme")],
        )
        .await;
    assert_eq!(matching.status, StatusCode::OK);
    let other = app
        .send(
            reqwest::Method::GET,
            "/v1/users",
            Some(&admin),
            None,
            &[("x-tenant-id", "globex")],
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);

    // A well-signed token for a tenant that was never registered.
    let ghost = signed(&app, "test-key", &claims("ghost", |_| {}));
    assert_eq!(
        app.get("/v1/users", &ghost).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn rotating_the_signing_key_logs_nobody_out() {
    let before = TestApp::spawn().await;
    let admin = before.tenant_with_admin("acme").await;

    // Rotate: a new pair signs from now on; the old private key goes, its public key stays.
    command_api::auth::keys::write_key_pair(&before.keys_dir, "key-2").unwrap();
    std::fs::rename(
        before.keys_dir.join("test-key.key.pem"),
        before.keys_dir.join("test-key.key.pem.retired"),
    )
    .unwrap();
    let after = before.second_instance().await;

    assert_eq!(
        after.get("/v1/users", &admin).await.status,
        StatusCode::OK,
        "a token of the old key was refused"
    );
    let fresh = after.token(Some("acme"), "acme-admin", PASSWORD).await;
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        Some("key-2")
    );
    assert_eq!(after.get("/v1/users", &fresh).await.status, StatusCode::OK);
}
