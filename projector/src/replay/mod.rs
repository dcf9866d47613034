//! `projector replay`: rebuilding projections from the event store, the source of truth,
//! while the system keeps serving; `--rollback`; `projector verify`.
//!
//! A full rebuild reads the global log to its settled end, folds it into a new index or
//! table (bulk writes, refresh off), gives that its serving settings, catches it up with
//! what arrived meanwhile, swaps it in atomically (one `_aliases` call; two renames in one
//! transaction), catches up once more through the live names, prunes old generations and
//! verifies the result against the store. The live projector runs throughout: it writes
//! through the aliases and the live table name, so before the swap it feeds the old
//! generation and after it the new one, and every write on both paths is version-guarded.
//!
//! # Layout
//! - [`context`]: what a replay talks to, and the lock that serializes replays.
//! - [`rebuild`]: the full rebuild into a new generation.
//! - [`tenant_repair`]: one tenant rebuilt in place.
//! - [`rollback`]: the previous generation back into service.
//! - [`report`]: what each did, as data and as text.
//! - [`build`]: the fold of the log into documents.
//! - [`writers`]: bulk writes, COPY, in-place replacement.
//! - [`catch_up`]: from a position to the end of the log, through the live projection code.
//! - [`generation`], [`indices`], [`tables`]: generations, swaps, rollback targets, pruning.
//! - [`verify`]: per-tenant count and checksum against the store.
//! - [`progress`]: a bar on a terminal, lines elsewhere.
//!
//! Which projections exist is [`registry`](crate::projections::registry)'s to say, and how
//! each is built, verified and where it lives is its [`Projection`]'s; nothing here names a
//! projection. What differs here is where a projection lives ([`Storage`]: a table or an
//! index), never which one it is.
//!
//! [`Projection`]: crate::projections::Projection
//! [`Storage`]: crate::projections::Storage

pub mod build;
pub mod catch_up;
pub mod context;
pub mod generation;
pub mod indices;
pub mod progress;
pub mod rebuild;
pub mod report;
pub mod rollback;
pub mod tables;
pub mod tenant_repair;
pub mod verify;
pub mod writers;

use std::collections::BTreeMap;
use std::time::Instant;

use event_store::{EventStoreError, TenantId};
use read_model::EsError;
use read_model::indices::ensure_layout;

use self::context::{Context, ReplayLock};
use self::progress::ProgressMode;
use self::verify::Verification;
use crate::config::ProjectorConfig;
use crate::projections::{ProjectionError, ProjectionRef, registry};

pub use self::report::{ReplayReport, RollbackReport, Swap};
pub use self::rollback::rollback;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] EventStoreError),
    #[error("elasticsearch: {0}")]
    Elasticsearch(#[from] EsError),
    #[error("{0}")]
    Projection(#[from] ProjectionError),
    #[error("another replay of `{0}` is running against this database")]
    Busy(&'static str),
    #[error("tenant `{0}` has no events in the store")]
    UnknownTenant(String),
    #[error("`{0}` has no previous generation to roll back to")]
    NothingToRollBack(&'static str),
}

/// What to rebuild.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub projections: Vec<ProjectionRef>,
    pub tenant: Option<TenantId>,
    /// Read and fold everything, write nothing.
    pub dry_run: bool,
    /// Compare the result with the store at the end (the CLI always does).
    pub verify: bool,
    pub progress: ProgressMode,
}

/// Rebuilds the projections in `options` (see the module documentation).
pub async fn replay(
    config: &ProjectorConfig,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let writes_table = Context::writes_tables(&options.projections) && !options.dry_run;
    let context = Context::connect(config, writes_table).await?;
    let _lock = if options.dry_run {
        None
    } else {
        Some(ReplayLock::take(config, &options.projections).await?)
    };
    ensure_layout(&context.es, context.prefix(), &registry::index_kinds()).await?;
    let mut report = ReplayReport {
        projections: options.projections.iter().map(|p| p.name()).collect(),
        tenant: options.tenant.as_ref().map(ToString::to_string),
        dry_run: options.dry_run,
        events_read: 0,
        documents_written: BTreeMap::new(),
        documents_refused: 0,
        first_refusal: None,
        undecodable_streams: Vec::new(),
        undecodable_stream_count: 0,
        undecodable_events: 0,
        caught_up_events: 0,
        caught_up_rejected: 0,
        swaps: Vec::new(),
        pruned: Vec::new(),
        strays_deleted: 0,
        seconds: 0.0,
        verification: Vec::new(),
    };
    let label = format!(
        "replay {}{}",
        report.projections.join(","),
        options
            .tenant
            .as_ref()
            .map(|t| format!(" (tenant {t})"))
            .unwrap_or_default()
    );
    match &options.tenant {
        None => rebuild::rebuild_all(&context, options, &label, &mut report).await?,
        Some(tenant) => {
            tenant_repair::rebuild_tenant(&context, options, tenant, &label, &mut report).await?
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

pub(crate) async fn verify_all(
    context: &Context,
    projections: &[ProjectionRef],
    tenant: Option<&TenantId>,
) -> Result<Vec<Verification>, ReplayError> {
    let verifier = context.verifier();
    let mut verifications = Vec::new();
    for projection in projections {
        verifications.push(verifier.verify(*projection, tenant).await?);
    }
    Ok(verifications)
}

/// `projector verify`: the verification of a replay, on its own.
pub async fn verify(
    config: &ProjectorConfig,
    projections: &[ProjectionRef],
    tenant: Option<&TenantId>,
) -> Result<Vec<Verification>, ReplayError> {
    let context = Context::connect(config, false).await?;
    verify_all(&context, projections, tenant).await
}
