//! The projector's configuration: defaults, overridden by environment variables.
//!
//! | variable | default |
//! |---|---|
//! | `CHRONICLE_PROJECTOR_DATABASE_URL` | the projector's role on `127.0.0.1:5432/chronicle`: tenant-scoped reads of the store, the read model's writes, the global log through its function |
//! | `CHRONICLE_DEV_MODE` | `false`: `true` allows the development passwords |
//! | `CHRONICLE_PROJECTOR_RELAY_NAME` | `relay`: whose checkpoint the lag counts unpublished events from |
//! | `KAFKA_BROKERS` | `127.0.0.1:9092` |
//! | `ELASTICSEARCH_URL` | `http://127.0.0.1:9200` |
//! | `CHRONICLE_TOPIC_PREFIX` | `chronicle`: topics `<prefix>.<aggregate>.events`, dead letters `<prefix>.dlq` |
//! | `CHRONICLE_INDEX_PREFIX` | `chronicle`: aliases `<prefix>-customers`, `-audit`, `-history` |
//! | `CHRONICLE_PROJECTOR_METRICS_ADDR` | `127.0.0.1:9465` |
//! | `CHRONICLE_PROJECTOR_GROUP_PREFIX` | `chronicle-projector`: consumer group `<prefix>-<projection>` |
//! | `CHRONICLE_PROJECTOR_BATCH_SIZE` | `500` records per write |
//! | `CHRONICLE_PROJECTOR_BATCH_WAIT_MS` | `20`: how long a batch may wait to fill (the freshness it costs, against fewer, larger writes) |
//! | `DATABASE_ADMIN_URL` | the owner role on `127.0.0.1:5432/chronicle`: `projector replay` creates and renames read-model tables with it |
//! | `CHRONICLE_PROJECTOR_REPLAY_KEEP` | `2`: previous indices and tables a replay keeps for `--rollback` |
//! | `CHRONICLE_PROJECTOR_REPLAY_BULK_DOCS` | `5000` documents per bulk write while rebuilding |
//! | `CHRONICLE_PROJECTOR_STALL_AFTER_MS` | `30000`: events waiting this long with nothing projected, or a batch failing this long, make `/healthz` not ok |
//! | `CHRONICLE_PROJECTOR_VERIFY_ATTEMPTS` | `10`: a tenant whose projection differs from the store is checked again (1 s apart) this many times before it counts as a mismatch, so live lag is not reported as one |

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use service::Secret;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectorConfig {
    pub database_url: Secret,
    pub kafka_brokers: String,
    pub elasticsearch_url: String,
    pub topic_prefix: String,
    pub index_prefix: String,
    pub metrics_addr: String,
    pub group_prefix: String,
    pub batch_size: usize,
    pub batch_wait_ms: u64,
    pub database_admin_url: Secret,
    pub replay_keep: usize,
    pub replay_bulk_docs: usize,
    pub verify_attempts: u32,
    pub stall_after_ms: u64,
    /// Allows development passwords (refused otherwise).
    pub dev_mode: bool,
    /// The relay whose checkpoint says what is not in Kafka yet (part of the lag).
    pub relay_name: String,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            database_url: Secret::new(
                "postgres://chronicle_projector:chronicle_projector@127.0.0.1:5432/chronicle",
            ),
            kafka_brokers: "127.0.0.1:9092".to_owned(),
            elasticsearch_url: "http://127.0.0.1:9200".to_owned(),
            topic_prefix: "chronicle".to_owned(),
            index_prefix: "chronicle".to_owned(),
            metrics_addr: "127.0.0.1:9465".to_owned(),
            group_prefix: "chronicle-projector".to_owned(),
            batch_size: 500,
            batch_wait_ms: 20,
            database_admin_url: Secret::new(
                "postgres://chronicle_owner:chronicle_owner@127.0.0.1:5432/chronicle",
            ),
            replay_keep: 2,
            replay_bulk_docs: 5000,
            verify_attempts: 10,
            dev_mode: false,
            relay_name: "relay".to_owned(),
            stall_after_ms: 30_000,
        }
    }
}

impl ProjectorConfig {
    pub fn from_env() -> Result<Self, Box<figment::Error>> {
        Figment::from(Serialized::defaults(Self::default()))
            .merge(Env::raw().only(&["DATABASE_ADMIN_URL", "KAFKA_BROKERS", "ELASTICSEARCH_URL"]))
            .merge(
                Env::raw()
                    .only(&[
                        "CHRONICLE_TOPIC_PREFIX",
                        "CHRONICLE_INDEX_PREFIX",
                        "CHRONICLE_DEV_MODE",
                    ])
                    .map(|key| {
                        key.as_str()
                            .trim_start_matches("CHRONICLE_")
                            .to_ascii_lowercase()
                            .into()
                    }),
            )
            .merge(Env::prefixed("CHRONICLE_PROJECTOR_"))
            .extract()
            .map_err(Box::new)
    }

    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }

    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic_prefix)
    }
}
