//! The relay's configuration: defaults, overridden by environment variables.
//!
//! | variable | default |
//! |---|---|
//! | `CHRONICLE_RELAY_DATABASE_URL` | `postgres://chronicle_relay:chronicle_relay@127.0.0.1:5432/chronicle`: the relay's own role, the one that reads the global log and moves the checkpoint |
//! | `CHRONICLE_DEV_MODE` | `false`: `true` allows the development passwords (see `service::secret`) |
//! | `KAFKA_BROKERS` | `127.0.0.1:9092` |
//! | `CHRONICLE_TOPIC_PREFIX` | `chronicle` (topics are `<prefix>.<aggregate>.events`) |
//! | `CHRONICLE_RELAY_METRICS_ADDR` | `127.0.0.1:9464` |
//! | `CHRONICLE_RELAY_NAME` | `relay` (names the checkpoint and the lock) |
//! | `CHRONICLE_RELAY_TOPIC_PARTITIONS` | `12` |
//! | `CHRONICLE_RELAY_REPLICATION_FACTOR` | `1` |
//! | `CHRONICLE_RELAY_BATCH_SIZE` | `1000` events per read and publish |
//! | `CHRONICLE_RELAY_ACTIVE_POLL_MS` | `5`: while the log is busy, read again this soon after finding nothing |
//! | `CHRONICLE_RELAY_IDLE_AFTER_MS` | `2000`: after this long without events, wait for a notification instead |
//! | `CHRONICLE_RELAY_IDLE_POLL_MS` | `250`: while waiting, read anyway this often (a notification can be missed) |
//! | `CHRONICLE_RELAY_DELIVERY_TIMEOUT_MS` | `30000`: give up on a record after this, and retry from the checkpoint with a fresh producer |
//! | `CHRONICLE_RELAY_STALL_AFTER_MS` | `30000`: events waiting this long without the checkpoint moving, or a page unacknowledged this long, make `/healthz` not ok |
//! | `CHRONICLE_RELAY_LINGER_MS` | `5`: how long the producer waits to fill a batch |
//! | `CHRONICLE_RELAY_PAGES_IN_FLIGHT` | `4`: pages handed to Kafka and not yet acknowledged while the next is read |
//! | `CHRONICLE_RELAY_MAX_RECORD_BYTES` | `1000000`: the producer's record limit; a larger event (or one larger than its topic's `max.message.bytes`) goes out as a reference record |

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use service::Secret;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayConfig {
    /// The relay role's URL: the one role that reads the global log across tenants.
    pub database_url: Secret,
    /// Allows development passwords (refused otherwise).
    pub dev_mode: bool,
    pub kafka_brokers: String,
    pub topic_prefix: String,
    pub metrics_addr: String,
    pub relay_name: String,
    pub topic_partitions: i32,
    pub replication_factor: i32,
    pub batch_size: u32,
    pub active_poll_ms: u64,
    pub idle_after_ms: u64,
    pub idle_poll_ms: u64,
    pub stall_after_ms: u64,
    pub delivery_timeout_ms: u64,
    pub linger_ms: u64,
    pub pages_in_flight: usize,
    pub max_record_bytes: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            database_url: Secret::new(
                "postgres://chronicle_relay:chronicle_relay@127.0.0.1:5432/chronicle",
            ),
            dev_mode: false,
            kafka_brokers: "127.0.0.1:9092".to_owned(),
            topic_prefix: "chronicle".to_owned(),
            metrics_addr: "127.0.0.1:9464".to_owned(),
            relay_name: "relay".to_owned(),
            topic_partitions: 12,
            replication_factor: 1,
            batch_size: 1000,
            active_poll_ms: 5,
            idle_after_ms: 2_000,
            idle_poll_ms: 250,
            stall_after_ms: 30_000,
            delivery_timeout_ms: 30_000,
            linger_ms: 5,
            pages_in_flight: 4,
            max_record_bytes: 1_000_000,
        }
    }
}

impl RelayConfig {
    /// Defaults, then the environment.
    pub fn from_env() -> Result<Self, Box<figment::Error>> {
        Figment::from(Serialized::defaults(Self::default()))
            .merge(Env::raw().only(&["KAFKA_BROKERS"]))
            .merge(
                Env::raw()
                    .only(&["CHRONICLE_DEV_MODE"])
                    .map(|_| "dev_mode".into()),
            )
            .merge(
                Env::raw()
                    .only(&["CHRONICLE_TOPIC_PREFIX"])
                    .map(|_| "topic_prefix".into()),
            )
            // CHRONICLE_RELAY_NAME -> relay_name; the rest map by name.
            .merge(Env::prefixed("CHRONICLE_RELAY_").map(|key| {
                if key == "name" {
                    "relay_name".into()
                } else {
                    key.into()
                }
            }))
            .extract()
            .map_err(Box::new)
    }

    pub fn idle_poll(&self) -> Duration {
        Duration::from_millis(self.idle_poll_ms)
    }

    pub fn active_poll(&self) -> Duration {
        Duration::from_millis(self.active_poll_ms)
    }

    pub fn idle_after(&self) -> Duration {
        Duration::from_millis(self.idle_after_ms)
    }
}
