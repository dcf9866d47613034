//! Kafka for tests: a topic prefix per test on the shared broker, a consumer that reads
//! everything back, and a broker of a test's own for tests that stop Kafka.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use schemas::EventEnvelope;

use event_store::testing::env_url;
pub use event_store::testing::free_port;

/// A record as a consumer sees it.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub event: EventEnvelope,
}

/// Topics of one test: every name starts with a prefix of its own, so tests never see
/// each other's records. The topics are deleted when the value is dropped.
#[derive(Debug)]
pub struct TestTopics {
    pub brokers: String,
    pub prefix: String,
}

impl TestTopics {
    /// On the shared broker (`KAFKA_BROKERS`).
    pub fn new() -> Self {
        Self::on(env_url("KAFKA_BROKERS"))
    }

    pub fn on(brokers: String) -> Self {
        Self {
            brokers,
            prefix: format!("test{}", uuid::Uuid::now_v7().simple()),
        }
    }

    pub fn topic(&self, aggregate: &str) -> String {
        kafka_wire::topic_for(&self.prefix, aggregate)
    }

    /// A relay publishing to these topics from the store at `database_url` (the relay
    /// role's), in development mode, metrics on a port of its own, 3 partitions per topic.
    pub fn relay_config(&self, database_url: String) -> crate::RelayConfig {
        crate::RelayConfig {
            database_url: service::Secret::new(database_url),
            dev_mode: true,
            kafka_brokers: self.brokers.clone(),
            topic_prefix: self.prefix.clone(),
            metrics_addr: "127.0.0.1:0".to_owned(),
            topic_partitions: 3,
            ..crate::RelayConfig::default()
        }
    }

    /// Reads `topics` from the beginning until `enough` holds for what was read, or
    /// `timeout` passes; returns everything read. The blocking consumer runs off the
    /// runtime.
    pub async fn consume_until(
        &self,
        aggregates: &[&str],
        timeout: Duration,
        enough: impl Fn(&[ConsumedRecord]) -> bool + Send + 'static,
    ) -> Vec<ConsumedRecord> {
        let topics: Vec<String> = aggregates.iter().map(|a| self.topic(a)).collect();
        let brokers = self.brokers.clone();
        let consumer = tokio::task::spawn_blocking(move || subscribe(&brokers, &topics))
            .await
            .expect("the consumer thread does not panic");
        // Shared with each probe's blocking read, and locked only there.
        let reading = Arc::new(Mutex::new(Reading {
            consumer,
            records: Vec::new(),
            enough,
        }));
        // Not enough by the deadline: the caller judges what was read.
        let _ = service::eventually(timeout, || {
            let reading = reading.clone();
            async move {
                tokio::task::spawn_blocking(move || reading.lock().unwrap().read_ready())
                    .await
                    .expect("the consumer thread does not panic")
            }
        })
        .await;
        std::mem::take(&mut reading.lock().unwrap().records)
    }
}

impl Default for TestTopics {
    fn default() -> Self {
        Self::new()
    }
}

fn subscribe(brokers: &str, topics: &[String]) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("test-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("create the test consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    consumer
}

/// A consumer reading topics from the beginning, what it has read, and when that is enough.
struct Reading<F> {
    consumer: BaseConsumer,
    records: Vec<ConsumedRecord>,
    enough: F,
}

impl<F: Fn(&[ConsumedRecord]) -> bool> Reading<F> {
    /// The longest one read goes on: with records arriving steadily there is always one
    /// ready, and the caller's deadline is checked between reads.
    const MAX_READ: Duration = Duration::from_secs(1);
    /// Records taken between checks of `enough`. A check may go over everything read, so
    /// one after every record makes reading tens of thousands quadratic; a caller stopping
    /// something the moment it is enough (a relay killed mid-stream) sees at most this many
    /// more.
    const CHECK_EVERY: usize = 100;

    /// Reads what the broker has ready until it is enough; `Err` with the count read so far
    /// while it is not. Blocks.
    fn read_ready(&mut self) -> Result<(), usize> {
        let started = Instant::now();
        loop {
            if (self.enough)(&self.records) {
                return Ok(());
            }
            if started.elapsed() > Self::MAX_READ {
                return Err(self.records.len());
            }
            let before = self.records.len();
            // A moment for the first record, then what has already arrived. Subscribing
            // before the relay created the topics reports them missing; the consumer picks
            // them up on its next metadata refresh, so an error ends the read like an empty
            // poll does, and the next read tries again.
            let mut wait = Duration::from_millis(200);
            while self.records.len() - before < Self::CHECK_EVERY {
                let Some(Ok(message)) = self.consumer.poll(wait) else {
                    break;
                };
                self.records.push(consumed(&message));
                wait = Duration::ZERO;
            }
            if self.records.len() == before {
                return Err(before);
            }
        }
    }
}

fn consumed(message: &BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
        headers,
        event: serde_json::from_slice(message.payload().unwrap_or_default())
            .expect("record values are event envelopes"),
    }
}

impl Drop for TestTopics {
    fn drop(&mut self) {
        let brokers = self.brokers.clone();
        let prefix = format!("{}.", self.prefix);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .create()
                    .ok()?;
                let metadata = admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .ok()?;
                let ours: Vec<String> = metadata
                    .topics()
                    .iter()
                    .map(|t| t.name().to_owned())
                    .filter(|name| name.starts_with(&prefix))
                    .collect();
                if !ours.is_empty() {
                    let names: Vec<&str> = ours.iter().map(String::as_str).collect();
                    let options =
                        AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                    admin.delete_topics(&names, &options).await.ok()?;
                }
                Some(())
            })
        })
        .join();
    }
}

/// A single-node KRaft broker of one test's own, for tests that stop and restart Kafka.
/// Runs the same jars as the shared broker (`CHRONICLE_KAFKA_LIBS`, set by `./dev test`).
#[derive(Debug)]
pub struct DedicatedKafka {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl DedicatedKafka {
    /// Formats storage in a fresh directory and starts the broker.
    pub async fn start() -> Self {
        let mut broker = tokio::task::spawn_blocking(Self::format)
            .await
            .expect("formatting does not panic");
        broker.resume().await;
        broker
    }

    /// A fresh directory with the broker's configuration and formatted storage (runs the
    /// Kafka storage tool: blocks for seconds).
    fn format() -> Self {
        let dir =
            std::env::temp_dir().join(format!("chronicle-kafka-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create the broker directory");
        let port = free_port();
        let controller_port = free_port();
        let properties = format!(
            "process.roles=broker,controller\nnode.id=1\n\
             controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\nauto.create.topics.enable=false\nnum.partitions=1\n\
             offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), properties).expect("write server.properties");
        let status = Self::java()
            .args(["kafka.tools.StorageTool", "format", "--standalone", "-t"])
            .arg(cluster_id())
            .arg("-c")
            .arg(dir.join("server.properties"))
            .stdout(Stdio::null())
            .status()
            .expect("run the Kafka storage tool");
        assert!(
            status.success(),
            "formatting the dedicated broker's storage failed"
        );
        Self {
            dir,
            port,
            process: None,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, then wait; SIGKILL after a minute). Its data stays for
    /// [`Self::resume`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let pid = child.id().to_string();
            let _ = tokio::task::spawn_blocking(move || {
                Command::new("kill").arg("-TERM").arg(pid).status()
            })
            .await;
            let exited = service::eventually(Duration::from_secs(60), || {
                std::future::ready(match child.try_wait() {
                    Ok(Some(_)) => Ok(()),
                    _ => Err(()),
                })
            })
            .await;
            if exited.is_err() {
                let _ = tokio::task::spawn_blocking(move || kill(child)).await;
            }
        }
    }

    /// Starts the broker on its data and waits until it accepts connections.
    pub async fn resume(&mut self) {
        let dir = self.dir.clone();
        let child = tokio::task::spawn_blocking(move || {
            let log = std::fs::File::create(dir.join("broker.log")).expect("create the broker log");
            Self::java()
                .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx384m")
                .arg("-Xms128m")
                .arg("-Xmx384m")
                .arg("kafka.Kafka")
                .arg(dir.join("server.properties"))
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .expect("start the dedicated broker")
        })
        .await
        .expect("starting the broker does not panic");
        self.process = Some(child);
        let port = self.port;
        service::eventually(Duration::from_secs(90), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await
        })
        .await
        .unwrap_or_else(|last| {
            panic!(
                "the dedicated broker did not start ({last}); see {}",
                self.dir.join("broker.log").display()
            )
        });
    }

    fn java() -> Command {
        let java = std::env::var("CHRONICLE_JAVA").unwrap_or_else(|_| "java".to_owned());
        let libs = env_url("CHRONICLE_KAFKA_LIBS");
        let mut command = Command::new(java);
        command.arg("-cp").arg(format!("{libs}/*"));
        command
    }
}

/// A Kafka cluster id: 16 bytes in unpadded URL-safe base64 (22 characters).
fn cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (mut bits, mut pending, mut id) = (0u32, 0u32, String::with_capacity(22));
    for byte in uuid::Uuid::now_v7().as_bytes() {
        bits = (bits << 8) | u32::from(*byte);
        pending += 8;
        while pending >= 6 {
            pending -= 6;
            id.push(char::from(ALPHABET[((bits >> pending) & 63) as usize]));
        }
    }
    id.push(char::from(
        ALPHABET[((bits << (6 - pending)) & 63) as usize],
    ));
    id
}

impl Drop for DedicatedKafka {
    /// Its data goes with it, so it need not stop cleanly: SIGKILL ends it at once, where
    /// a clean stop could keep whatever thread drops it waiting for a minute.
    fn drop(&mut self) {
        if let Some(child) = self.process.take() {
            kill(child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
