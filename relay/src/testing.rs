//! Kafka for tests: a topic prefix per test on the shared broker, a consumer that reads
//! everything back, and a broker of a test's own for tests that stop Kafka.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
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
        crate::cloudevents::topic_for(&self.prefix, aggregate)
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
    /// `timeout` passes; returns everything read. Runs the blocking consumer off the
    /// runtime.
    pub async fn consume_until(
        &self,
        aggregates: &[&str],
        timeout: Duration,
        enough: impl Fn(&[ConsumedRecord]) -> bool + Send + 'static,
    ) -> Vec<ConsumedRecord> {
        let topics: Vec<String> = aggregates.iter().map(|a| self.topic(a)).collect();
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || consume_blocking(&brokers, &topics, timeout, enough))
            .await
            .expect("the consumer thread does not panic")
    }
}

impl Default for TestTopics {
    fn default() -> Self {
        Self::new()
    }
}

fn consume_blocking(
    brokers: &str,
    topics: &[String],
    timeout: Duration,
    enough: impl Fn(&[ConsumedRecord]) -> bool,
) -> Vec<ConsumedRecord> {
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

    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while Instant::now() < deadline && !enough(&records) {
        // Subscribing before the relay created the topics reports them missing; the
        // consumer picks them up on its next metadata refresh, so errors are skipped.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
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
            records.push(ConsumedRecord {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                event: serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("record values are event envelopes"),
            });
        }
    }
    records
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
    pub fn start() -> Self {
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
        let mut broker = Self {
            dir,
            port,
            process: None,
        };
        broker.resume();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, then wait). Its data stays for [`Self::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker on its data and waits until it accepts connections.
    pub fn resume(&mut self) {
        let log =
            std::fs::File::create(self.dir.join("broker.log")).expect("create the broker log");
        let child = Self::java()
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx384m")
            .arg("-Xms128m")
            .arg("-Xmx384m")
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start the dedicated broker");
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the dedicated broker did not start; see {}",
            self.dir.join("broker.log").display()
        );
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
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
