//! A steady write load over several tenants, sent the way a careful client sends it:
//! creates, patches (with `If-Match`) and archives, each with an `Idempotency-Key`, retried
//! with the same key on a dropped connection, a timeout, 408, 429 or 503 (after
//! `Retry-After`), on the next API instance; a new token on 401. What came back is written
//! in a [`Ledger`]: every command answered 2xx with where it landed, and every answer
//! that a client should never see (a 500, a 503 without `Retry-After`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{RwLock, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::cluster::ADMIN;

const PASSWORD: &str = "lab-password-for-writers";
/// A command still not answered 2xx after this long is given up (and counted as such).
const GIVE_UP_AFTER: Duration = Duration::from_secs(180);
/// Commands in flight at once; beyond it the load waits (and the rate held drops).
const MAX_IN_FLIGHT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommandKind {
    Create,
    Patch,
    Archive,
}

/// A command answered 2xx: the customer and the version it landed at.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub tenant: String,
    pub customer: Uuid,
    pub version: u64,
    pub kind: CommandKind,
    pub at: Instant,
}

/// Everything the load saw.
#[derive(Debug, Default)]
pub struct Ledger {
    pub accepted: Vec<Accepted>,
    /// Final and intermediate answers by status (retries included).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused or reset, timeout).
    pub no_answer: u64,
    /// Answers a client must never get: 5xx other than 503, and 503 without `Retry-After`.
    pub violations: Vec<String>,
    /// Commands given up after [`GIVE_UP_AFTER`] without a 2xx.
    pub given_up: u64,
    /// Commands refused for good (4xx other than the retried ones): the load's own bugs.
    pub refused: Vec<String>,
}

impl Ledger {
    /// Accepted commands within `[from, to)`.
    pub fn accepted_between(&self, from: Instant, to: Instant) -> usize {
        self.accepted
            .iter()
            .filter(|a| a.at >= from && a.at < to)
            .count()
    }

    /// Each customer's highest accepted version, by tenant.
    pub fn latest_versions(&self) -> HashMap<(String, Uuid), u64> {
        let mut latest = HashMap::new();
        for accepted in &self.accepted {
            let version = latest
                .entry((accepted.tenant.clone(), accepted.customer))
                .or_insert(0);
            *version = accepted.version.max(*version);
        }
        latest
    }
}

#[derive(Debug, Clone)]
struct Customer {
    id: Uuid,
    version: u64,
    archived: bool,
    busy: bool,
}

/// One tenant's writer and what it knows of its customers.
#[derive(Debug)]
struct TenantLoad {
    id: String,
    token: RwLock<String>,
    customers: Mutex<Vec<Customer>>,
}

#[derive(Debug)]
pub struct Load {
    pub ledger: Arc<Mutex<Ledger>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    apis: Vec<String>,
    next_api: AtomicUsize,
    tenants: Vec<TenantLoad>,
    ledger: Arc<Mutex<Ledger>>,
    /// While true, no new command starts (those in flight finish).
    paused: AtomicBool,
    in_flight: Arc<Semaphore>,
}

impl Load {
    /// Registers `tenants` tenants with a writer each, then sends `rate` commands per
    /// second spread over them until [`Load::stop`].
    pub async fn start(apis: Vec<String>, tenants: usize, rate: f64) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(45))
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client");
        let loads = register_writers(&client, &apis[0], "lab", tenants)
            .await
            .into_iter()
            .map(|(id, token)| TenantLoad {
                id,
                token: RwLock::new(token),
                customers: Mutex::new(Vec::new()),
            })
            .collect();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let shared = Arc::new(Shared {
            client,
            apis,
            next_api: AtomicUsize::new(0),
            tenants: loads,
            ledger: ledger.clone(),
            paused: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(drive(shared.clone(), rate, stop.clone()));
        Self {
            ledger,
            shared,
            stop,
            task,
        }
    }

    /// Stops starting commands and waits until those in flight are answered (or given
    /// up): the store then holds everything the ledger will ever say was accepted.
    pub async fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        let all = u32::try_from(MAX_IN_FLIGHT).expect("a small number");
        let _all_idle = self
            .shared
            .in_flight
            .acquire_many(all)
            .await
            .expect("the semaphore is never closed");
    }

    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Sends `count` creates at once (beside the steady load), for a relay batch to
    /// be in flight; returns when they are answered.
    pub async fn burst(&self, count: usize) {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..count {
            let shared = self.shared.clone();
            tasks.spawn(async move {
                let tenant = n % shared.tenants.len();
                one_command_of(&shared, tenant, Some(CommandKind::Create)).await;
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Stops sending, and waits for the commands in flight to be answered or given up.
    pub async fn stop(self) -> Arc<Mutex<Ledger>> {
        self.stop.cancel();
        let _ = self.task.await;
        self.ledger
    }
}

/// Sends commands at `rate` per second, open loop (on schedule, not after the previous
/// answer), each on a task of its own.
async fn drive(shared: Arc<Shared>, rate: f64, stop: CancellationToken) {
    let in_flight = shared.in_flight.clone();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n: usize = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if shared.paused.load(Ordering::SeqCst) {
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let tenant = n % shared.tenants.len();
        n += 1;
        let shared = shared.clone();
        tasks.spawn(async move {
            one_command(&shared, tenant).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// What to send next for a tenant: a create while it has few customers, then mostly
/// patches, some archives, some creates.
fn choose(customers: &mut [Customer]) -> (CommandKind, Option<usize>) {
    let live: Vec<usize> = customers
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.archived && !c.busy)
        .map(|(i, _)| i)
        .collect();
    let roll = fastrand::u8(0..100);
    if live.len() < 10 || roll < 40 {
        return (CommandKind::Create, None);
    }
    let pick = live[fastrand::usize(0..live.len())];
    let kind = if roll < 90 {
        CommandKind::Patch
    } else {
        CommandKind::Archive
    };
    (kind, Some(pick))
}

async fn one_command(shared: &Shared, tenant_index: usize) {
    one_command_of(shared, tenant_index, None).await;
}

/// One command for a tenant: of `kind`, or of the kind [`choose`] picks.
async fn one_command_of(shared: &Shared, tenant_index: usize, kind: Option<CommandKind>) {
    let tenant = &shared.tenants[tenant_index];
    let (kind, target) = {
        let mut customers = tenant.customers.lock().expect("customers lock");
        let (kind, target) = match kind {
            Some(CommandKind::Create) => (CommandKind::Create, None),
            _ => choose(&mut customers),
        };
        let target = target.map(|i| {
            customers[i].busy = true;
            (i, customers[i].id, customers[i].version)
        });
        (kind, target)
    };
    let key = Uuid::now_v7().to_string();
    let n = fastrand::u32(..);
    let request = match (kind, target) {
        (CommandKind::Create, _) => Request {
            method: reqwest::Method::POST,
            path: "/v1/customers".to_owned(),
            if_match: None,
            body: Some(json!({
                "name": format!("Customer {n}"),
                "email": format!("c{n}@example.com"),
                "tags": ["lab"],
            })),
        },
        (CommandKind::Patch, Some((_, id, version))) => Request {
            method: reqwest::Method::PATCH,
            path: format!("/v1/customers/{id}"),
            if_match: Some(version),
            body: Some(
                json!({"name": format!("Renamed {n}"), "phone": format!("+49{:09}", n % 1_000_000_000)}),
            ),
        },
        (CommandKind::Archive, Some((_, id, version))) => Request {
            method: reqwest::Method::DELETE,
            path: format!("/v1/customers/{id}?reason=lab"),
            if_match: Some(version),
            body: None,
        },
        _ => unreachable!("patches and archives have a target"),
    };
    let landed = send_until_answered(shared, tenant, &request, &key).await;
    let mut customers = tenant.customers.lock().expect("customers lock");
    if let Some((_, id, _)) = target
        && let Some(customer) = customers.iter_mut().find(|c| c.id == id)
    {
        customer.busy = false;
    }
    let Some(body) = landed else { return };
    let (Some(id), Some(version)) = (
        body["id"].as_str().and_then(|id| Uuid::parse_str(id).ok()),
        body["version"].as_u64(),
    ) else {
        shared
            .ledger
            .lock()
            .expect("ledger lock")
            .refused
            .push(format!("an accepted answer without id and version: {body}"));
        return;
    };
    match customers.iter_mut().find(|c| c.id == id) {
        Some(customer) => {
            customer.version = customer.version.max(version);
            customer.archived |= kind == CommandKind::Archive;
        }
        None => customers.push(Customer {
            id,
            version,
            archived: false,
            busy: false,
        }),
    }
    drop(customers);
    shared
        .ledger
        .lock()
        .expect("ledger lock")
        .accepted
        .push(Accepted {
            tenant: tenant.id.clone(),
            customer: id,
            version,
            kind,
            at: Instant::now(),
        });
}

struct Request {
    method: reqwest::Method,
    path: String,
    if_match: Option<u64>,
    body: Option<Value>,
}

/// Sends until a 2xx (its body), a final refusal or [`GIVE_UP_AFTER`] (`None`).
async fn send_until_answered(
    shared: &Shared,
    tenant: &TenantLoad,
    request: &Request,
    key: &str,
) -> Option<Value> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        if started.elapsed() > GIVE_UP_AFTER {
            shared.ledger.lock().expect("ledger lock").given_up += 1;
            return None;
        }
        let api = &shared.apis[shared.next_api.fetch_add(1, Ordering::Relaxed) % shared.apis.len()];
        let token = tenant.token.read().await.clone();
        let mut builder = shared
            .client
            .request(request.method.clone(), format!("{api}{}", request.path))
            .bearer_auth(&token)
            .header("idempotency-key", key);
        if let Some(version) = request.if_match {
            builder = builder.header("if-match", format!("\"{version}\""));
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(_) => {
                shared.ledger.lock().expect("ledger lock").no_answer += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        {
            let mut ledger = shared.ledger.lock().expect("ledger lock");
            *ledger.statuses.entry(status.as_u16()).or_default() += 1;
            if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                ledger.violations.push(format!(
                    "{status} to {} {}: {body}",
                    request.method, request.path
                ));
            }
            if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_none() {
                ledger.violations.push(format!(
                    "503 without Retry-After to {} {}: {body}",
                    request.method, request.path
                ));
            }
        }
        match status {
            s if s.is_success() => return Some(body),
            StatusCode::UNAUTHORIZED => {
                // Tokens expire during a long run: log in again, as a client would.
                if let Some(fresh) =
                    login(&shared.client, api, Some(&tenant.id), "writer", PASSWORD).await
                {
                    *tenant.token.write().await = fresh;
                }
                tokio::time::sleep(backoff).await;
            }
            StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::BAD_GATEWAY
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::INTERNAL_SERVER_ERROR => {
                let wait = retry_after.map_or(backoff, Duration::from_secs);
                tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            _ => {
                shared
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .refused
                    .push(format!(
                        "{status} to {} {}: {body}",
                        request.method, request.path
                    ));
                return None;
            }
        }
    }
}

/// Registers `tenants` tenants (`<prefix>-<run>-<n>`), each with a writer as its admin, as
/// the bootstrap platform admin; each tenant's id and its writer's token.
pub async fn register_writers(
    client: &reqwest::Client,
    api: &str,
    prefix: &str,
    tenants: usize,
) -> Vec<(String, String)> {
    let platform = login(client, api, None, ADMIN.0, ADMIN.1)
        .await
        .expect("the bootstrap admin logs in");
    let run = &Uuid::now_v7().simple().to_string()[24..];
    let mut writers = Vec::with_capacity(tenants);
    for n in 0..tenants {
        let id = format!("{prefix}-{run}-{n}");
        let response = client
            .post(format!("{api}/v1/tenants"))
            .bearer_auth(&platform)
            .json(&json!({"id": id, "name": format!("{prefix} tenant {n}"),
                "admin": {"username": "writer", "password": PASSWORD, "display_name": "Writer"}}))
            .send()
            .await
            .expect("register a tenant");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "register {id}: {:?}",
            response.text().await
        );
        let token = login(client, api, Some(&id), "writer", PASSWORD)
            .await
            .expect("the tenant's writer logs in");
        writers.push((id, token));
    }
    writers
}

pub async fn login(
    client: &reqwest::Client,
    api: &str,
    tenant: Option<&str>,
    username: &str,
    password: &str,
) -> Option<String> {
    for _ in 0..60 {
        let response = client
            .post(format!("{api}/v1/auth/token"))
            .json(&json!({"tenant": tenant, "username": username, "password": password}))
            .send()
            .await;
        if let Ok(response) = response
            && response.status().is_success()
            && let Ok(body) = response.json::<Value>().await
            && let Some(token) = body["access_token"].as_str()
        {
            return Some(token.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}
