//! A running API for tests (feature `testing`): its own scratch database and signing key,
//! bound to port 0, driven over real HTTP. The end-to-end tests put the relay and the
//! projector behind it.

use std::path::PathBuf;
use std::sync::Arc;

use event_store::testing::ScratchDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use service::Secret;
use tokio_util::sync::CancellationToken;

use crate::{ApiConfig, Application};

pub const ADMIN_PASSWORD: &str = "test-admin-password";
pub const PASSWORD: &str = "correct horse battery";

/// The API runs on a runtime and thread of its own: when the test ends, it is shut down
/// and its connections are closed before the scratch database is dropped. (On the test's
/// own single-threaded runtime, a connection the API was opening at that moment would
/// hang in authentication while `Drop` blocks, and hold up the drop for a minute.)
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    /// The operations listener (`/metrics` for scrapers, no token).
    pub metrics_base: String,
    pub client: reqwest::Client,
    pub keys_dir: PathBuf,
    pub db: Arc<ScratchDatabase>,
    config: ApiConfig,
    shutdown: CancellationToken,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The field names of a 422's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customize: impl FnOnce(&mut ApiConfig)) -> Self {
        let db = Arc::new(ScratchDatabase::create().await);
        Self::spawn_on(db, customize).await
    }

    /// Like [`TestApp::spawn_with`], without waiting for readiness: for tests of an
    /// instance that cannot become ready (a dependency away).
    pub async fn spawn_unready(customize: impl FnOnce(&mut ApiConfig)) -> Self {
        let db = Arc::new(ScratchDatabase::create().await);
        let (keys_dir, mut config) = Self::config_on(&db);
        customize(&mut config);
        Self::start(db, keys_dir, config, false).await
    }

    /// The API on an existing scratch database (one a pipeline already reads).
    pub async fn spawn_on(
        db: Arc<ScratchDatabase>,
        customize: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let (keys_dir, mut config) = Self::config_on(&db);
        customize(&mut config);
        Self::start(db, keys_dir, config, true).await
    }

    /// A fresh key pair, and the configuration of an API on `db` with it.
    fn config_on(db: &ScratchDatabase) -> (PathBuf, ApiConfig) {
        let keys_dir =
            std::env::temp_dir().join(format!("chronicle-keys-{}", uuid::Uuid::now_v7().simple()));
        crate::auth::keys::write_key_pair(&keys_dir, "test-key").unwrap();
        let config = ApiConfig {
            http_addr: "127.0.0.1:0".to_owned(),
            metrics_addr: "127.0.0.1:0".to_owned(),
            database_url: Secret::new(db.app_url()),
            dev_mode: true,
            jwt_keys_dir: keys_dir.clone(),
            bootstrap_admin: Some(Secret::new(format!("platform-admin:{ADMIN_PASSWORD}"))),
            ..ApiConfig::default()
        };
        (keys_dir, config)
    }

    /// Another instance of the API on the same database and keys, as in a deployment.
    pub async fn second_instance(&self) -> Self {
        Self::start(
            self.db.clone(),
            self.keys_dir.clone(),
            self.config.clone(),
            true,
        )
        .await
    }

    async fn start(
        db: Arc<ScratchDatabase>,
        keys_dir: PathBuf,
        config: ApiConfig,
        wait_for_readiness: bool,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let (bound, address) = tokio::sync::oneshot::channel();
        let server = std::thread::spawn({
            let (config, shutdown) = (config.clone(), shutdown.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("command-api")
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let app = Application::build(config).await.expect("the API starts");
                    let _ = bound.send((app.local_addr().unwrap(), app.metrics_addr().unwrap()));
                    app.run(shutdown).await.unwrap();
                });
            }
        });
        let (address, metrics_address) = address.await.expect("the API bound its ports");
        let base = format!("http://{address}");
        if wait_for_readiness {
            wait_until_ready(&base).await;
        }
        Self {
            base,
            metrics_base: format!("http://{metrics_address}"),
            client: reqwest::Client::new(),
            keys_dir,
            db,
            config,
            shutdown,
            server: Some(server),
        }
    }

    pub fn private_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.keys_dir.join("test-key.key.pem")).unwrap()
    }

    pub fn public_key_pem(&self) -> Vec<u8> {
        std::fs::read(self.keys_dir.join("test-key.pub.pem")).unwrap()
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    /// A PATCH of a resource the client read at `version`: `If-Match: "<version>"`, the
    /// precondition every change of a versioned resource needs.
    pub async fn patch_at(&self, path: &str, token: &str, version: u64, body: Value) -> Reply {
        let etag = format!("\"{version}\"");
        self.send(
            Method::PATCH,
            path,
            Some(token),
            Some(body),
            &[("if-match", &etag)],
        )
        .await
    }

    /// The text of the operations listener's `/metrics`.
    pub async fn ops_metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn login(&self, tenant: Option<&str>, username: &str, password: &str) -> Reply {
        let mut body = json!({"username": username, "password": password});
        if let Some(tenant) = tenant {
            body["tenant"] = json!(tenant);
        }
        self.send(Method::POST, "/v1/auth/token", None, Some(body), &[])
            .await
    }

    /// Logs in and returns the access token. A login shed with 503 is retried after its
    /// `Retry-After`, as a well-behaved client would: the password threads are shared by the
    /// whole test process, and another test may be flooding them on purpose.
    pub async fn token(&self, tenant: Option<&str>, username: &str, password: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut reply = self.login(tenant, username, password).await;
        while reply.status == StatusCode::SERVICE_UNAVAILABLE
            && std::time::Instant::now() < deadline
        {
            let wait = reply
                .header("retry-after")
                .and_then(|secs| secs.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            reply = self.login(tenant, username, password).await;
        }
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login of {username}: {:?}",
            reply.body
        );
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn platform_token(&self) -> String {
        self.token(None, "platform-admin", ADMIN_PASSWORD).await
    }

    /// Registers `tenant` with an admin `<tenant>-admin`; returns the admin's token.
    pub async fn tenant_with_admin(&self, tenant: &str) -> String {
        let platform = self.platform_token().await;
        let reply = self
            .post(
                "/v1/tenants",
                &platform,
                json!({"id": tenant, "name": format!("{tenant} Inc."),
                       "admin": {"username": format!("{tenant}-admin"), "password": PASSWORD, "display_name": "Admin"}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        self.token(Some(tenant), &format!("{tenant}-admin"), PASSWORD)
            .await
    }

    /// Adds a user with `role` to the admin's tenant; returns the user's token.
    pub async fn user(
        &self,
        tenant: &str,
        admin_token: &str,
        username: &str,
        role: &str,
    ) -> String {
        let reply = self
            .post(
                "/v1/users",
                admin_token,
                json!({"username": username, "password": PASSWORD, "display_name": username, "role": role}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        self.token(Some(tenant), username, PASSWORD).await
    }

    pub async fn create_customer(&self, token: &str, name: &str) -> String {
        let reply = self
            .post(
                "/v1/customers",
                token,
                json!({"name": name, "email": "someone@example.com"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// The events of one stream as stored, read as the tenant.
    pub async fn stream(&self, tenant: &str, stream: &str) -> Vec<event_store::EventEnvelope> {
        let store = event_store::EventStore::new(self.db.app_pool(1).await);
        let tenant = event_store::TenantId::parse(tenant).unwrap();
        let stream = event_store::StreamId::parse(stream).unwrap();
        store.read_stream(&tenant, &stream, 1, 1000).await.unwrap()
    }
}

/// Authenticated requests get 503 until the instance follows the change feed: wait for it,
/// as a load balancer's readiness probe would.
async fn wait_until_ready(base: &str) {
    let client = reqwest::Client::new();
    service::eventually(std::time::Duration::from_secs(30), || async {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(reply) if reply.status().is_success() => Ok(()),
            Ok(reply) => Err(reply.status().to_string()),
            Err(error) => Err(error.to_string()),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("the API at {base} was not ready within 30 s: last {last}"));
}

/// Elasticsearch indices of a test's own (a unique prefix, the templates' layout), removed
/// when dropped.
#[derive(Debug)]
pub struct TestIndices {
    pub url: String,
    pub prefix: String,
}

impl TestIndices {
    pub async fn create(name: &str) -> Self {
        let url = event_store::testing::env_url("ELASTICSEARCH_URL");
        let es = read_model::Es::new(&url).expect("ELASTICSEARCH_URL is a URL");
        let prefix = format!("{name}-{}", uuid::Uuid::now_v7().simple());
        // The indices the API reads; the projector, absent here, would keep them.
        let read = [
            read_model::search::INDEX,
            read_model::history::INDEX,
            read_model::audit::INDEX,
        ];
        read_model::indices::ensure_layout(&es, &prefix, &read)
            .await
            .expect("the indices are created");
        Self { url, prefix }
    }
}

impl Drop for TestIndices {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // On a runtime of our own, with a client of its own: the test's runtime is blocked
        // here (or gone, after a panic), and its client's connections belong to it.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let es = read_model::Es::new(&url).ok()?;
            runtime.block_on(read_model::indices::remove_layout(&es, &prefix));
            Some(())
        })
        .join();
    }
}
