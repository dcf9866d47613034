//! Chronicle end to end: the command API with the relay and the projector running behind
//! it, each on the test's own scratch database, Kafka topic prefix and index prefix.
//!
//! # Layout
//! - [`System`]: the whole pipeline for one test or benchmark.
//! - [`pipeline`]: the relay and the projector without the API, for the projector's tests
//!   (here rather than in the projector, which must not depend on the relay).
//! - [`bench`]: percentiles and the report every benchmark writes for `./dev bench`.
//! - [`pgbench`]: PostgreSQL's own `pgbench`, the baseline a write path is held to.
//! - [`lab`]: the real processes under load, for `./dev chaos` and `./dev soak` (the
//!   `chaos` and `soak` binaries).
//! - `tests/`: the read endpoints through the pipeline; the projections fed by a real relay
//!   (pipeline, health, replay, stored events, forgetting).
//! - `benches/`: `relay`, `commands`, `projector`, `replay` and `system`, each against
//!   its raw baseline in the same run.

pub mod bench;
pub mod lab;
pub mod pgbench;
pub mod pipeline;

use std::ops::Deref;
use std::sync::Arc;

use crate::pipeline::Pipeline;
use command_api::testing::TestApp;
use event_store::testing::ScratchDatabase;

/// The API, the relay and every projection, wired to one scratch database.
#[derive(Debug)]
pub struct System {
    /// Stopped first when dropped, before the API drops the database it reads.
    pub pipeline: Pipeline,
    pub app: TestApp,
}

impl System {
    pub async fn start() -> Self {
        let db = Arc::new(ScratchDatabase::create().await);
        let pipeline = Pipeline::start(&db).await;
        let prefix = pipeline.index_prefix().to_owned();
        let app = TestApp::spawn_on(db, |config| config.index_prefix = prefix).await;
        Self { pipeline, app }
    }
}

impl Deref for System {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}
