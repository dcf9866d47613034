//! The API's configuration: defaults, overridden by environment variables.
//!
//! | variable | default |
//! |---|---|
//! | `CHRONICLE_HTTP_ADDR` | `127.0.0.1:8080` |
//! | `CHRONICLE_API_METRICS_ADDR` | `127.0.0.1:9466`: `/metrics` (with tenant labels) and `/healthz` for scrapers, no token; on the API's port `/metrics` needs a platform admin's token |
//! | `DATABASE_URL` | the app role on `127.0.0.1:5432/chronicle` |
//! | `CHRONICLE_JWT_KEYS_DIR` | `.chronicle/keys/jwt`: `<kid>.key.pem` signs (exactly one), every `<kid>.pub.pem` verifies |
//! | `CHRONICLE_JWT_SIGNING_KEY`, `CHRONICLE_JWT_SIGNING_KID` | a PEM signing key from the environment instead of a file |
//! | `CHRONICLE_JWT_ALGORITHM` | `EdDSA`; `HS256` only when set explicitly, with `CHRONICLE_JWT_HS256_SECRET` |
//! | `CHRONICLE_JWT_ISSUER`, `CHRONICLE_JWT_AUDIENCE` | `chronicle`, `chronicle-api` |
//! | `CHRONICLE_JWT_TTL_SECS` | `900` (15 minutes) |
//! | `CHRONICLE_BOOTSTRAP_ADMIN` | unset; `username:password` of the first platform admin |
//! | `CHRONICLE_LOGIN_PER_ADDRESS_PER_MINUTE` | `30` failed logins per client network (an IPv4 address, an IPv6 /64); beyond it 429 until the budget refills |
//! | `CHRONICLE_LOGIN_PER_ACCOUNT_PER_MINUTE` | `10` failed logins per account from one client network; successful logins are never counted |
//! | `CHRONICLE_IDEMPOTENCY_SECRET` | unset: derived from the JWT signing key. The key of the HMAC that fingerprints requests for `Idempotency-Key`; set it (32+ bytes, the same on every instance) to keep fingerprints valid across a signing-key rotation |
//! | `CHRONICLE_TENANT_WRITES_PER_SECOND`, `CHRONICLE_TENANT_WRITE_BURST` | `50`, `100` writes per tenant |
//! | `ELASTICSEARCH_URL` | `http://127.0.0.1:9200`: search, history and audit reads |
//! | `CHRONICLE_INDEX_PREFIX` | `chronicle`: the aliases `<prefix>-customers`, `-history`, `-audit` |
//! | `CHRONICLE_DB_POOL_SIZE` | `32` connections to PostgreSQL |
//! | `CHRONICLE_DB_ACQUIRE_TIMEOUT_MS` | `2000`: how long a request waits for a connection before it is answered 503 with `Retry-After` |
//! | `CHRONICLE_HTTP_HEADER_TIMEOUT_MS` | `10000`: a request's headers must arrive within this, and an idle kept-alive connection is closed after it |
//! | `CHRONICLE_HTTP_REQUEST_TIMEOUT_MS` | `40000`: a whole request (body included) must be done within this, else 408 (above the longest `?min_version` wait, 30 s) |
//! | `CHRONICLE_HTTP_MAX_CONNECTIONS` | `1024` connections at once; more wait to be accepted |
//! | `CHRONICLE_HTTP_MAX_IN_FLIGHT` | `512` requests at once; more are answered 503 with `Retry-After` at once |
//! | `CHRONICLE_ELASTICSEARCH_TIMEOUT_MS` | `5000`: a search, history or audit read that Elasticsearch does not answer in time is a 503 with `Retry-After` |
//! | `CHRONICLE_METRICS_MAX_TENANTS` | `100`: tenants that get a `tenant` label of their own in `/metrics`; the rest are counted as `other` (the cardinality bound) |
//! | `CHRONICLE_DEV_MODE` | `false`: `true` allows the development passwords (database roles named as their passwords, the bootstrap admin's `dev-admin-password`); `./dev` sets it |
//! | `CHRONICLE_SIGNUP` | `closed`: `open` serves `POST /v1/signup` (self-service tenants); `./dev up` sets it |
//! | `CHRONICLE_SIGNUP_PER_ADDRESS_PER_HOUR` | `20` sign-ups per client network (an IPv4 address, an IPv6 /64) |
//! | `CHRONICLE_SIGNUP_PENDING_TIMEOUT_SECS` | `3600`: a tenant whose set-up was left halfway this long is taken back (its id free again) |
//! | `CHRONICLE_HOUSEKEEPING_INTERVAL_SECS` | `60`: how often expired records are purged and unfinished sign-ups looked for |
//! | `CHRONICLE_BASE_DOMAIN` | `localhost`: `<tenant>.<base domain>` names the tenant of a login or sign-up |
//! | `CHRONICLE_REFRESH_WINDOW_SECS` | `2592000` (30 days): a refresh token unused this long expires; each refresh starts it afresh |
//! | `CHRONICLE_MIN_VERSION_WAITS_PER_TENANT`, `CHRONICLE_MIN_VERSION_WAITS_TOTAL` | `200`, `1000`: reads waiting for `?min_version` at once; more are answered 429 |

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
pub use service::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiConfig {
    pub http_addr: String,
    /// `/metrics` and `/healthz` for scrapers, without a token: keep it off public networks.
    pub metrics_addr: String,
    pub database_url: Secret,
    pub jwt_keys_dir: PathBuf,
    pub jwt_signing_key: Option<Secret>,
    pub jwt_signing_kid: Option<String>,
    pub jwt_algorithm: String,
    pub jwt_hs256_secret: Option<Secret>,
    /// Keys the HMAC of request fingerprints; derived from the signing key when unset.
    pub idempotency_secret: Option<Secret>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_ttl_secs: u64,
    pub bootstrap_admin: Option<Secret>,
    pub login_per_address_per_minute: u32,
    pub login_per_account_per_minute: u32,
    pub tenant_writes_per_second: u32,
    pub tenant_write_burst: u32,
    pub elasticsearch_url: String,
    pub index_prefix: String,
    pub db_pool_size: u32,
    pub db_acquire_timeout_ms: u64,
    pub http_max_in_flight: usize,
    pub http_header_timeout_ms: u64,
    pub http_request_timeout_ms: u64,
    pub http_max_connections: usize,
    pub min_version_waits_per_tenant: usize,
    pub min_version_waits_total: usize,
    /// Allows development passwords (refused otherwise): `CHRONICLE_DEV_MODE`.
    pub dev_mode: bool,
    pub elasticsearch_timeout_ms: u64,
    pub metrics_max_tenants: usize,
    /// `open` or `closed`.
    pub signup: String,
    pub signup_per_address_per_hour: u32,
    pub signup_pending_timeout_secs: u64,
    pub housekeeping_interval_secs: u64,
    pub base_domain: String,
    pub refresh_window_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8080".to_owned(),
            metrics_addr: "127.0.0.1:9466".to_owned(),
            database_url: Secret::new(
                "postgres://chronicle_app:chronicle_app@127.0.0.1:5432/chronicle",
            ),
            jwt_keys_dir: PathBuf::from(".chronicle/keys/jwt"),
            jwt_signing_key: None,
            jwt_signing_kid: None,
            jwt_algorithm: "EdDSA".to_owned(),
            jwt_hs256_secret: None,
            idempotency_secret: None,
            jwt_issuer: "chronicle".to_owned(),
            jwt_audience: "chronicle-api".to_owned(),
            jwt_ttl_secs: 900,
            bootstrap_admin: None,
            login_per_address_per_minute: 30,
            login_per_account_per_minute: 10,
            tenant_writes_per_second: 50,
            tenant_write_burst: 100,
            elasticsearch_url: "http://127.0.0.1:9200".to_owned(),
            index_prefix: "chronicle".to_owned(),
            db_pool_size: 32,
            db_acquire_timeout_ms: 2_000,
            http_max_in_flight: 512,
            http_header_timeout_ms: 10_000,
            http_request_timeout_ms: 40_000,
            http_max_connections: 1_024,
            min_version_waits_per_tenant: 200,
            min_version_waits_total: 1_000,
            dev_mode: false,
            elasticsearch_timeout_ms: 5_000,
            metrics_max_tenants: 100,
            signup: "closed".to_owned(),
            signup_per_address_per_hour: 20,
            signup_pending_timeout_secs: 3_600,
            housekeeping_interval_secs: 60,
            base_domain: "localhost".to_owned(),
            refresh_window_secs: 30 * 24 * 3_600,
        }
    }
}

impl ApiConfig {
    /// Whether `POST /v1/signup` is served.
    pub fn signup_open(&self) -> bool {
        self.signup.eq_ignore_ascii_case("open")
    }

    /// Defaults, then `DATABASE_URL` and every `CHRONICLE_<FIELD>` variable (the metrics
    /// address is `CHRONICLE_API_METRICS_ADDR`).
    pub fn from_env() -> Result<Self, Box<figment::Error>> {
        Figment::from(Serialized::defaults(Self::default()))
            .merge(Env::raw().only(&["DATABASE_URL", "ELASTICSEARCH_URL"]))
            .merge(Env::prefixed("CHRONICLE_").ignore(&["metrics_addr"]))
            // Named like the relay's and the projector's, all three set side by side.
            .merge(
                Env::raw()
                    .only(&["CHRONICLE_API_METRICS_ADDR"])
                    .map(|_| "metrics_addr".into()),
            )
            .extract()
            .map_err(Box::new)
    }
}
