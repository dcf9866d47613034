//! Chronicle's three processes as real OS processes (the binaries `./dev up` builds), any
//! number of instances of each, on a scratch database, topic prefix, index prefix and
//! consumer groups of their own: what a deployment runs, small enough for one machine.
//!
//! Instances can be killed with SIGKILL (no clean-up of any kind), restarted as a
//! supervisor would, or stopped with SIGTERM and timed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use event_store::testing::{ScratchDatabase, free_port};
use projector::ProjectorConfig;
use service::Secret;
use tokio::process::{Child, Command};

/// The bootstrap admin every API instance creates (and a development password is fine:
/// the instances run with `CHRONICLE_DEV_MODE`).
pub const ADMIN: (&str, &str) = ("platform-admin", "lab-admin-password");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Api,
    Relay,
    Projector,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Self::Api => "command-api",
            Self::Relay => "relay",
            Self::Projector => "projector",
        }
    }
}

/// One instance: its configuration, and its process while it runs.
#[derive(Debug)]
pub struct Instance {
    pub name: String,
    pub kind: Kind,
    /// The API's address (APIs only).
    pub http: Option<String>,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics: String,
    env: Vec<(String, String)>,
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.binary);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(command.spawn()?);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL: no flush, no commit, no goodbye to the consumer group.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts the instance again, as a supervisor would after a crash.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.spawn()
    }

    /// SIGTERM, then waits up to `within` for the process to end; how long it took, or
    /// `None` if it had to be killed.
    pub async fn terminate(&mut self, within: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(within, child.wait()).await {
            Ok(_) => Some(started.elapsed()),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                None
            }
        }
    }

    /// Resident memory in bytes, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The API's base URL (APIs only).
    pub fn base_url(&self) -> Option<String> {
        self.http.as_ref().map(|addr| format!("http://{addr}"))
    }

    /// Where readiness is asked: the API's `/readyz`, the others' `/healthz`.
    fn readiness_url(&self) -> String {
        match &self.http {
            Some(addr) => format!("http://{addr}/readyz"),
            None => format!("http://{}/healthz", self.metrics),
        }
    }

    pub async fn healthz(&self, client: &reqwest::Client) -> Option<serde_json::Value> {
        let response = client
            .get(format!("http://{}/healthz", self.metrics))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The value of an unlabelled gauge or counter in `/metrics`.
    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        let text = client
            .get(format!("http://{}/metrics", self.metrics))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name || key == format!("{name}_total"))
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
    }
}

/// How many of each, and where the binaries are.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub apis: usize,
    pub relays: usize,
    pub projectors: usize,
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Extra environment for every instance (say, a release build's tuning).
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Cluster {
    pub instances: Vec<Instance>,
    pub db: ScratchDatabase,
    pub prefix: String,
    keys_dir: PathBuf,
}

impl Cluster {
    pub async fn start(spec: &ClusterSpec) -> Self {
        for binary in [Kind::Api, Kind::Relay, Kind::Projector].map(Kind::binary) {
            let path = spec.bin_dir.join(binary);
            assert!(
                path.exists(),
                "{} is missing: build the binaries first (./dev does)",
                path.display()
            );
        }
        std::fs::create_dir_all(&spec.log_dir).expect("create the log directory");
        let db = ScratchDatabase::create().await;
        let prefix = format!("lab{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let keys_dir = std::env::temp_dir().join(format!("chronicle-{prefix}-keys"));
        command_api::auth::keys::write_key_pair(&keys_dir, "lab").expect("write a JWT key pair");

        let mut instances = Vec::new();
        let counts = [
            (Kind::Api, spec.apis),
            (Kind::Relay, spec.relays),
            (Kind::Projector, spec.projectors),
        ];
        for (kind, count) in counts {
            for n in 1..=count {
                let name = format!("{}-{n}", kind.binary());
                let http = (kind == Kind::Api).then(|| format!("127.0.0.1:{}", free_port()));
                let metrics = format!("127.0.0.1:{}", free_port());
                let mut env = common_env(&db, &prefix);
                env.extend(instance_env(
                    kind,
                    &db,
                    &prefix,
                    http.as_deref(),
                    &metrics,
                    &keys_dir,
                ));
                env.extend(spec.env.iter().cloned());
                let log = spec.log_dir.join(format!("{name}.log"));
                let _ = std::fs::remove_file(&log);
                instances.push(Instance {
                    name,
                    kind,
                    http,
                    metrics,
                    env,
                    binary: spec.bin_dir.join(kind.binary()),
                    log,
                    child: None,
                });
            }
        }
        // The projectors make the indices the API reads; the relay makes the topics the
        // projectors read. Start in that order, each kind ready before the next.
        let mut cluster = Self {
            instances,
            db,
            prefix,
            keys_dir,
        };
        for kind in [Kind::Relay, Kind::Projector, Kind::Api] {
            for instance in cluster.instances.iter_mut().filter(|i| i.kind == kind) {
                instance
                    .spawn()
                    .unwrap_or_else(|e| panic!("start {}: {e}", instance.name));
            }
            cluster
                .wait_ready(Some(kind), Duration::from_secs(120))
                .await
                .unwrap_or_else(|name| panic!("{name} did not become ready within 120 s"));
        }
        cluster
    }

    /// Waits until every running instance (of `kind`, or all) answers its readiness
    /// probe; the name of one that did not, on timeout.
    pub async fn wait_ready(&self, kind: Option<Kind>, within: Duration) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        for instance in self
            .instances
            .iter()
            .filter(|i| kind.is_none_or(|k| i.kind == k) && i.child.is_some())
        {
            loop {
                // A relay or projector answers /healthz as soon as it listens; ready for
                // the lab means answering at all (health itself is what faults probe).
                let answered = client
                    .get(instance.readiness_url())
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await
                    .is_ok_and(|r| instance.kind != Kind::Api || r.status().is_success());
                if answered {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(instance.name.clone());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(move |i| i.kind == kind)
    }

    pub fn named(&mut self, name: &str) -> &mut Instance {
        self.instances
            .iter_mut()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    /// Every API instance's base URL.
    pub fn api_urls(&self) -> Vec<String> {
        self.of(Kind::Api).filter_map(Instance::base_url).collect()
    }

    /// The relay instance holding the lock, if one does.
    pub async fn active_relay(&self, client: &reqwest::Client) -> Option<String> {
        for relay in self.of(Kind::Relay) {
            if relay.metric(client, "chronicle_relay_leader").await == Some(1.0) {
                return Some(relay.name.clone());
            }
        }
        None
    }

    /// The projector configuration the instances run with, for `projector verify`.
    pub fn projector_config(&self) -> ProjectorConfig {
        ProjectorConfig {
            database_url: Secret::new(self.db.projector_url()),
            database_admin_url: Secret::new(self.db.admin_url()),
            topic_prefix: self.prefix.clone(),
            index_prefix: self.prefix.clone(),
            group_prefix: format!("{}-projector", self.prefix),
            relay_name: format!("{}-relay", self.prefix),
            dev_mode: true,
            // Brokers and Elasticsearch as the environment says (`./dev env`).
            ..ProjectorConfig::from_env().unwrap_or_default()
        }
    }

    pub fn keys_dir(&self) -> &Path {
        &self.keys_dir
    }

    /// SIGTERM to every instance; how long each took to end (`None`: it had to be killed).
    pub async fn stop(&mut self, within: Duration) -> Vec<(String, Option<Duration>)> {
        let mut stopped = Vec::new();
        for kind in [Kind::Api, Kind::Projector, Kind::Relay] {
            for instance in self.instances.iter_mut().filter(|i| i.kind == kind) {
                if instance.child.is_some() {
                    let took = instance.terminate(within).await;
                    stopped.push((instance.name.clone(), took));
                }
            }
        }
        stopped
    }

    /// Removes what the run made outside the database (dropped with the cluster): its
    /// indices, topics and keys.
    pub async fn clean_up(&self) {
        if let Ok(es) = read_model::Es::new(&self.projector_config().elasticsearch_url) {
            read_model::indices::remove_layout(&es, &self.prefix).await;
        }
        let _ = std::fs::remove_dir_all(&self.keys_dir);
    }
}

fn common_env(db: &ScratchDatabase, prefix: &str) -> Vec<(String, String)> {
    [
        ("CHRONICLE_DEV_MODE", "true".to_owned()),
        ("CHRONICLE_TOPIC_PREFIX", prefix.to_owned()),
        ("CHRONICLE_INDEX_PREFIX", prefix.to_owned()),
        ("DATABASE_ADMIN_URL", db.admin_url()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn instance_env(
    kind: Kind,
    db: &ScratchDatabase,
    prefix: &str,
    http: Option<&str>,
    metrics: &str,
    keys_dir: &Path,
) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match kind {
        Kind::Api => vec![
            ("DATABASE_URL", db.app_url()),
            ("CHRONICLE_HTTP_ADDR", http.unwrap_or_default().to_owned()),
            ("CHRONICLE_API_METRICS_ADDR", metrics.to_owned()),
            ("CHRONICLE_JWT_KEYS_DIR", keys_dir.display().to_string()),
            (
                "CHRONICLE_BOOTSTRAP_ADMIN",
                format!("{}:{}", ADMIN.0, ADMIN.1),
            ),
            // The lab's load is the client's to choose: the per-tenant limit would only
            // turn it into 429s.
            ("CHRONICLE_TENANT_WRITES_PER_SECOND", "100000".to_owned()),
            ("CHRONICLE_TENANT_WRITE_BURST", "100000".to_owned()),
        ],
        Kind::Relay => vec![
            ("CHRONICLE_RELAY_DATABASE_URL", db.relay_url()),
            ("CHRONICLE_RELAY_METRICS_ADDR", metrics.to_owned()),
            ("CHRONICLE_RELAY_NAME", format!("{prefix}-relay")),
        ],
        Kind::Projector => vec![
            ("CHRONICLE_PROJECTOR_DATABASE_URL", db.projector_url()),
            ("CHRONICLE_PROJECTOR_METRICS_ADDR", metrics.to_owned()),
            (
                "CHRONICLE_PROJECTOR_GROUP_PREFIX",
                format!("{prefix}-projector"),
            ),
            ("CHRONICLE_PROJECTOR_RELAY_NAME", format!("{prefix}-relay")),
        ],
    };
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
