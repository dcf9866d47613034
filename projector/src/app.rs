//! [`Projector`]: every projection of one process, built from a config and run until
//! cancelled, with metrics and health on the metrics port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use event_store::EventStore;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectorConfig;
use crate::dlq::DeadLetters;
use crate::metrics::ProjectorMetrics;
use crate::projections::{ProjectionRef, Sinks, registry};
use crate::runner::Runner;
use read_model::indices;
use read_model::{Es, EsError};

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    DevelopmentSecret(#[from] service::dev_guard::DevelopmentSecret),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] EsError),
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct Projector {
    runners: Vec<Runner>,
    metrics: Arc<ProjectorMetrics>,
    listener: TcpListener,
}

impl Projector {
    /// Connects, installs the index layout and the dead-letter topic, binds the metrics port.
    pub async fn build(
        config: &ProjectorConfig,
        projections: &[ProjectionRef],
    ) -> Result<Self, ProjectorError> {
        service::dev_guard::check_database_url(
            config.dev_mode,
            "CHRONICLE_PROJECTOR_DATABASE_URL",
            config.database_url.expose(),
        )?;
        let pool = event_store::pool::options(8)
            .connect(config.database_url.expose())
            .await?;
        let es = Es::new(&config.elasticsearch_url)?;
        indices::ensure_layout(&es, &config.index_prefix, &registry::index_kinds()).await?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .create()?;
        kafka_wire::topics::create_topics(&admin, &[config.dlq_topic()], 1, 1).await?;

        let sinks = Sinks::live(EventStore::new(pool), es, &config.index_prefix);
        let metrics = Arc::new(ProjectorMetrics::with_stall_after(Duration::from_millis(
            config.stall_after_ms,
        )));
        let dead_letters = DeadLetters::new(config)?;
        let runners = projections
            .iter()
            .map(|projection| {
                Runner::new(
                    *projection,
                    config,
                    sinks.clone(),
                    dead_letters.clone(),
                    metrics.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listener = TcpListener::bind(&config.metrics_addr).await?;
        Ok(Self {
            runners,
            metrics,
            listener,
        })
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        let Self {
            runners,
            metrics,
            listener,
        } = self;
        let server = service::ops_server::spawn(listener, metrics, shutdown.clone());
        let tasks: Vec<_> = runners
            .into_iter()
            .map(|runner| tokio::spawn(runner.run(shutdown.clone())))
            .collect();
        for task in tasks {
            if let Ok(Err(error)) = task.await {
                // One projection down takes the process down, to be restarted whole.
                tracing::error!(%error, "a projection failed");
                shutdown.cancel();
            }
        }
        shutdown.cancelled().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        Ok(())
    }
}
