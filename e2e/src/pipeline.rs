//! The pipeline behind the API for a test: the relay and the projector running on a
//! runtime and thread of their own against the test's scratch database, with a Kafka topic
//! prefix and an Elasticsearch index prefix of their own, removed afterwards.

use std::time::Duration;

use event_store::testing::ScratchDatabase;
use relay::testing::TestTopics;
use relay::{Relay, RelayConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use projector::projections::{ProjectionRef, registry};
use projector::{Projector, ProjectorConfig};
use read_model::es::Es;
use service::Secret;

#[derive(Debug)]
pub struct Pipeline {
    pub topics: TestTopics,
    pub config: ProjectorConfig,
    pub es: Es,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pipeline {
    /// Starts a relay and every projection on `db`, each as its own role.
    pub async fn start(db: &ScratchDatabase) -> Self {
        Self::start_with(db, registry::ALL).await
    }

    /// Starts a relay and the given projections (none: the relay alone, for tests that
    /// run the `projector` binary themselves).
    pub async fn start_with(db: &ScratchDatabase, projections: &[ProjectionRef]) -> Self {
        Self::start_tuned(db, projections, |_| {}).await
    }

    /// Like [`Pipeline::start_with`], with the relay's configuration adjusted first.
    pub async fn start_tuned(
        db: &ScratchDatabase,
        projections: &[ProjectionRef],
        tune_relay: impl FnOnce(&mut RelayConfig),
    ) -> Self {
        let projections = projections.to_vec();
        let topics = TestTopics::new();
        let config = projector_config(db, &topics);
        let mut relay_config = topics.relay_config(db.relay_url());
        tune_relay(&mut relay_config);
        let es = Es::new(&config.elasticsearch_url).expect("ELASTICSEARCH_URL is a URL");
        let shutdown = CancellationToken::new();
        let (started, ready) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn({
            let (config, shutdown) = (config.clone(), shutdown.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let relay = Relay::build(relay_config).await.expect("the relay starts");
                    let projector = Projector::build(&config, &projections)
                        .await
                        .expect("the projector starts");
                    let _ = started.send(());
                    let relay = tokio::spawn(relay.run(shutdown.clone()));
                    projector.run(shutdown).await.expect("the projector runs");
                    let _ = relay.await;
                });
            }
        });
        ready.await.expect("the pipeline started");
        Self {
            topics,
            config,
            es,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn index_prefix(&self) -> &str {
        &self.config.index_prefix
    }

    /// Stops the relay and the projector (their Kafka offsets stay committed).
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Polls an Elasticsearch search on `alias` (of this pipeline's prefix) until `done`
    /// holds for its hits or 60 s pass; returns the last hits.
    pub async fn search_until(
        &self,
        kind: read_model::indices::IndexKind,
        body: Value,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let path = format!("/{}/_search", kind.alias(self.index_prefix()));
        let (Ok(hits) | Err(hits)) = service::eventually(Duration::from_secs(60), || async {
            let hits = match self
                .es
                .request(
                    elasticsearch::http::Method::Post,
                    &path,
                    Some(body.clone()),
                    &[404],
                )
                .await
            {
                Ok((_, response)) => response["hits"]["hits"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            if done(&hits) { Ok(hits) } else { Err(hits) }
        })
        .await;
        hits
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
        let url = self.config.elasticsearch_url.clone();
        let prefix = self.config.index_prefix.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            // A client of this runtime's own: the test's client pools connections on the
            // test's runtime, which is blocked in this drop (using them here would hang).
            let es = Es::new(&url).ok()?;
            runtime.block_on(read_model::indices::remove_layout(&es, &prefix));
            Some(())
        })
        .join();
    }
}

/// A projector reading `topics` and writing indices under their prefix, on `db`, in
/// development mode, metrics on a port of its own.
pub fn projector_config(db: &ScratchDatabase, topics: &TestTopics) -> ProjectorConfig {
    ProjectorConfig {
        database_url: Secret::new(db.projector_url()),
        dev_mode: true,
        kafka_brokers: topics.brokers.clone(),
        elasticsearch_url: event_store::testing::env_url("ELASTICSEARCH_URL"),
        topic_prefix: topics.prefix.clone(),
        index_prefix: topics.prefix.clone(),
        metrics_addr: "127.0.0.1:0".to_owned(),
        group_prefix: topics.prefix.clone(),
        ..ProjectorConfig::default()
    }
}

/// A Chronicle binary of this build (`target/<profile>/<name>`), for tests that run the real
/// process. `./dev test` builds every binary before the tests.
pub fn binary(name: &str) -> std::path::PathBuf {
    // A test runs as target/<profile>/deps/<test>-<hash>.
    let path = std::env::current_exe()
        .ok()
        .and_then(|test| Some(test.parent()?.parent()?.join(name)))
        .unwrap_or_else(|| panic!("no target directory for `{name}`"));
    assert!(
        path.is_file(),
        "{} is not built: run the tests through `./dev test` (it builds every binary first)",
        path.display()
    );
    path
}
