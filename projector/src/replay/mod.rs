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
//! A tenant's rebuild (`--tenant`) rewrites that tenant's part in place: its documents
//! re-indexed (`external_gte`) and strays removed, its rows replaced in one transaction;
//! then a catch-up from a horizon taken before the read, and verification of that tenant.
//!
//! - [`build`]: the fold of the log into documents.
//! - [`writers`]: bulk writes, COPY, in-place replacement.
//! - [`catch_up`]: from a position to the end of the log, through the live projection code.
//! - [`generation`], [`indices`], [`tables`]: generations, swaps, rollback targets, pruning.
//! - [`verify`]: per-tenant count and checksum against the store.
//! - [`progress`]: a bar on a terminal, lines elsewhere.

pub mod build;
pub mod catch_up;
pub mod generation;
pub mod indices;
pub mod progress;
pub mod tables;
pub mod verify;
pub mod writers;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use event_store::{EventStore, EventStoreError, LogPosition, TenantId};
use schemas::EventEnvelope;
use serde::Serialize;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;

use self::build::{Builders, EsBuild};
use self::catch_up::{Trail, catch_up, catch_up_closely};
use self::generation::Retired;
use self::progress::{Progress, ProgressMode};
use self::verify::{Verification, Verifier, index_kind};
use self::writers::BulkWriter;
use crate::config::ProjectorConfig;
use crate::es::{Es, EsError};
use crate::indices::{IndexKind, ensure_layout, ensure_tenant_aliases};
use crate::projections::{Projection, ProjectionError, Sinks, Targets};

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
    pub projections: Vec<Projection>,
    pub tenant: Option<TenantId>,
    /// Read and fold everything, write nothing.
    pub dry_run: bool,
    /// Compare the result with the store at the end (the CLI always does).
    pub verify: bool,
    pub progress: ProgressMode,
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub projections: Vec<&'static str>,
    pub tenant: Option<String>,
    pub dry_run: bool,
    pub events_read: u64,
    /// Documents (rows for `customers`) written by the rebuild, per projection.
    pub documents_written: BTreeMap<&'static str, u64>,
    pub documents_refused: u64,
    pub first_refusal: Option<String>,
    /// Streams skipped because an event does not decode, with the reason (the first ten).
    pub undecodable_streams: Vec<String>,
    pub undecodable_stream_count: u64,
    pub undecodable_events: u64,
    /// Events applied after the rebuild's read, before and after the swap.
    pub caught_up_events: u64,
    /// Of those, events a projection could not use (the live projector parks them).
    pub caught_up_rejected: u64,
    pub swaps: Vec<Swap>,
    pub pruned: Vec<String>,
    pub strays_deleted: u64,
    pub seconds: f64,
    pub verification: Vec<Verification>,
}

impl ReplayReport {
    /// True when every verified tenant matched the store.
    pub fn verified(&self) -> bool {
        self.verification.iter().all(Verification::passed)
    }
}

/// One projection put into service: what was behind its name before, and what is now.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    pub projection: &'static str,
    pub retired: Vec<String>,
    pub in_service: String,
}

/// Everything a replay talks to.
#[derive(Debug, Clone)]
struct Context {
    config: ProjectorConfig,
    store: EventStore,
    es: Es,
    owner: Option<PgPool>,
}

impl Context {
    async fn connect(config: &ProjectorConfig, owner: bool) -> Result<Self, ReplayError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(config.database_url.expose())
            .await?;
        let owner = if owner {
            Some(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(config.database_admin_url.expose())
                    .await?,
            )
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            store: EventStore::new(pool),
            es: Es::new(&config.elasticsearch_url)?,
            owner,
        })
    }

    fn owner(&self) -> &PgPool {
        self.owner
            .as_ref()
            .expect("connected as the owner for the read model")
    }

    fn prefix(&self) -> &str {
        &self.config.index_prefix
    }

    fn live_sinks(&self) -> Sinks {
        Sinks::live(self.store.clone(), self.es.clone(), self.prefix())
    }

    fn verifier(&self) -> Verifier {
        Verifier {
            store: self.store.clone(),
            es: self.es.clone(),
            index_prefix: self.prefix().to_owned(),
            attempts: self.config.verify_attempts,
            pause: Duration::from_secs(1),
        }
    }
}

/// One replay (or rollback) per projection at a time: session advisory locks held on a
/// connection of its own, released when it closes (also when the process dies).
#[derive(Debug)]
struct ReplayLock {
    _connection: PgConnection,
}

impl ReplayLock {
    async fn take(
        config: &ProjectorConfig,
        projections: &[Projection],
    ) -> Result<Self, ReplayError> {
        let mut connection = PgConnection::connect(config.database_url.expose()).await?;
        for projection in projections {
            let taken: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtext('chronicle.replay.' || $1))",
            )
            .bind(projection.name())
            .fetch_one(&mut connection)
            .await?;
            if !taken {
                return Err(ReplayError::Busy(projection.name()));
            }
        }
        Ok(Self {
            _connection: connection,
        })
    }
}

/// Rebuilds the projections in `options` (see the module documentation).
pub async fn replay(
    config: &ProjectorConfig,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let writes_table = options.projections.contains(&Projection::Customers) && !options.dry_run;
    let context = Context::connect(config, writes_table).await?;
    let _lock = if options.dry_run {
        None
    } else {
        Some(ReplayLock::take(config, &options.projections).await?)
    };
    ensure_layout(&context.es, context.prefix()).await?;
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
        None => rebuild_all(&context, options, &label, &mut report).await?,
        Some(tenant) => rebuild_tenant(&context, options, tenant, &label, &mut report).await?,
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A page of the log and where it ends.
type Page = (Vec<EventEnvelope>, LogPosition);

/// Reads the global log from the start to its settled end into `pages`, a page ahead of
/// the fold. Returns the position of the last event read.
async fn read_log(
    store: EventStore,
    pages: mpsc::Sender<Page>,
) -> Result<LogPosition, ReplayError> {
    const PAGE: u32 = 5000;
    let mut position = LogPosition::START;
    loop {
        let page = store.read_global_log(position, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(position);
        };
        position = last.position;
        let full = page.len() == PAGE as usize;
        let events = page.into_iter().map(|e| e.event).collect();
        if pages.send((events, position)).await.is_err() || !full {
            return Ok(position);
        }
    }
}

/// What a full rebuild is writing into, for the swap or, on failure, the clean-up.
#[derive(Debug, Default)]
struct BuildTargets {
    table: Option<String>,
    indices: Vec<(Projection, IndexKind, String)>,
}

async fn rebuild_all(
    context: &Context,
    options: &ReplayOptions,
    label: &str,
    report: &mut ReplayReport,
) -> Result<(), ReplayError> {
    let total: u64 = context
        .store
        .tenants_with_events()
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    let progress = Progress::new(options.progress, label, total);
    let generation = generation::new_name();
    let mut targets = BuildTargets::default();
    let mut builders = Builders::new(false);
    let outcome = async {
        for projection in &options.projections {
            match index_kind(*projection) {
                None => {
                    builders.customers = true;
                    if !options.dry_run {
                        targets.table =
                            Some(tables::create_build_table(context.owner(), &generation).await?);
                    }
                }
                Some(kind) => {
                    let index = if options.dry_run {
                        kind.index(context.prefix(), &generation)
                    } else {
                        indices::create_build_index(
                            &context.es,
                            kind,
                            context.prefix(),
                            &generation,
                        )
                        .await?
                    };
                    targets.indices.push((*projection, kind, index.clone()));
                    let build = EsBuild {
                        index,
                        writer: BulkWriter::new(
                            context.es.clone(),
                            context.config.replay_bulk_docs,
                            !options.dry_run,
                            false,
                        ),
                    };
                    match projection {
                        Projection::Search => builders.search = Some(build),
                        Projection::History => builders.history = Some(build),
                        _ => builders.audit = Some(build),
                    }
                }
            }
        }

        // Read and fold, the reader a page ahead.
        let mut trail = Trail::default();
        let (pages, mut incoming) = mpsc::channel::<Page>(4);
        let reader = tokio::spawn(read_log(context.store.clone(), pages));
        while let Some((events, position)) = incoming.recv().await {
            report.events_read += events.len() as u64;
            progress.advance(events.len() as u64);
            builders.feed(&events).await?;
            trail.record(position);
        }
        let end = reader.await.expect("the log reader does not panic")?;
        progress.phase("writing the last documents");
        finish_builders(&mut builders, report).await?;
        if builders.customers {
            let views = builders.views();
            let written = match &targets.table {
                Some(table) => {
                    let mut conn = context.owner().acquire().await?;
                    writers::copy_views(&mut conn, table, &views).await?
                }
                None => views.len() as u64,
            };
            report
                .documents_written
                .insert(Projection::Customers.name(), written);
        }
        if options.dry_run {
            return Ok(());
        }

        progress.phase("restoring index settings");
        if let Some(table) = &targets.table {
            tables::finish_build_table(context.owner(), table).await?;
        }
        for (_, kind, index) in &targets.indices {
            indices::finish_build_index(&context.es, *kind, index).await?;
        }

        progress.phase("catching up before the swap");
        let mut build_sinks = context.live_sinks();
        if let Some(table) = &targets.table {
            build_sinks.targets.customer_table = table.clone();
        }
        for (projection, _, index) in &targets.indices {
            set_index_target(&mut build_sinks.targets, *projection, index);
        }
        let before = catch_up_closely(&build_sinks, &options.projections, end, &mut trail).await?;
        for (_, _, index) in &targets.indices {
            context.es.refresh(index).await?;
        }

        progress.phase("swapping");
        let retired = Retired::at(trail.before(RETIREMENT_MARGIN));
        if let Some(table) = targets.table.take() {
            let old = tables::swap(context.owner(), &table, retired).await?;
            report.swaps.push(Swap {
                projection: Projection::Customers.name(),
                retired: vec![old],
                in_service: table,
            });
        }
        for (projection, kind, index) in std::mem::take(&mut targets.indices) {
            let old = indices::swap(&context.es, kind, context.prefix(), &index, retired).await?;
            report.swaps.push(Swap {
                projection: projection.name(),
                retired: old,
                in_service: index,
            });
        }

        progress.phase("catching up after the swap");
        let after = catch_up(
            &context.live_sinks(),
            &options.projections,
            before.position,
            None,
            &mut trail,
        )
        .await?;
        report.caught_up_events = before.events + after.events;
        report.caught_up_rejected = before.rejected + after.rejected;

        progress.phase("pruning old generations");
        report.pruned = prune(context, &options.projections).await?;
        Ok::<(), ReplayError>(())
    }
    .await;

    if let Err(error) = outcome {
        progress.finish();
        discard(context, targets).await;
        return Err(error);
    }
    if !options.dry_run && options.verify {
        progress.phase("verifying");
        report.verification = verify_all(context, &options.projections, None).await?;
    }
    progress.finish();
    Ok(())
}

/// How far before a swap the retired generation's catch-up point is put: it covers the
/// live projector's lag at the time of the swap.
const RETIREMENT_MARGIN: Duration = Duration::from_secs(60);

fn set_index_target(targets: &mut Targets, projection: Projection, index: &str) {
    match projection {
        Projection::Search => targets.search_index = index.to_owned(),
        Projection::History => targets.history_index = index.to_owned(),
        Projection::Audit => targets.audit_index = index.to_owned(),
        Projection::Customers => {}
    }
}

/// Writes the builders' last documents, waits for every write, and reports the outcome.
async fn finish_builders(
    builders: &mut Builders,
    report: &mut ReplayReport,
) -> Result<(), ReplayError> {
    for (projection, outcome) in builders.finish().await? {
        report
            .documents_written
            .insert(projection.name(), outcome.written);
        report.documents_refused += outcome.refused;
        if report.first_refusal.is_none() {
            report.first_refusal = outcome.first_refusal;
        }
    }
    record_undecodable(builders, report);
    Ok(())
}

fn record_undecodable(builders: &Builders, report: &mut ReplayReport) {
    report.undecodable_stream_count = builders.undecodable.len() as u64;
    report.undecodable_streams = builders
        .undecodable
        .iter()
        .take(10)
        .map(|(stream, reason)| format!("{stream}: {reason}"))
        .collect();
    report.undecodable_events = builders.undecodable_events;
}

/// Removes what a failed rebuild had created (best effort: pruning removes leftovers).
async fn discard(context: &Context, targets: BuildTargets) {
    if let Some(table) = targets.table
        && let Err(error) = tables::drop_table(context.owner(), &table).await
    {
        tracing::warn!(%error, table, "could not drop the unfinished table");
    }
    for (_, _, index) in targets.indices {
        if let Err(error) = indices::delete_index(&context.es, &index).await {
            tracing::warn!(%error, index, "could not delete the unfinished index");
        }
    }
}

async fn prune(context: &Context, projections: &[Projection]) -> Result<Vec<String>, ReplayError> {
    let keep = context.config.replay_keep;
    let mut pruned = Vec::new();
    for projection in projections {
        match index_kind(*projection) {
            None => pruned.extend(tables::prune(context.owner(), keep).await?),
            Some(kind) => {
                pruned.extend(indices::prune(&context.es, kind, context.prefix(), keep).await?);
            }
        }
    }
    Ok(pruned)
}

async fn verify_all(
    context: &Context,
    projections: &[Projection],
    tenant: Option<&TenantId>,
) -> Result<Vec<Verification>, ReplayError> {
    let verifier = context.verifier();
    let mut verifications = Vec::new();
    for projection in projections {
        verifications.push(verifier.verify(*projection, tenant).await?);
    }
    Ok(verifications)
}

async fn rebuild_tenant(
    context: &Context,
    options: &ReplayOptions,
    tenant: &TenantId,
    label: &str,
    report: &mut ReplayReport,
) -> Result<(), ReplayError> {
    let total = context
        .store
        .tenants_with_events()
        .await?
        .into_iter()
        .find(|(t, _)| t == tenant)
        .map(|(_, n)| n)
        .ok_or_else(|| ReplayError::UnknownTenant(tenant.to_string()))?;
    let progress = Progress::new(options.progress, label, total);
    // Taken before the read: whatever commits after it is caught up below.
    let from = context.store.settled_horizon().await?;
    let mut tx = context.store.begin(tenant).await?;
    let events = tx.read_all().await?;
    tx.commit().await?;
    let read_to = events.iter().map(|e| e.global_position).max().unwrap_or(0);
    report.events_read = events.len() as u64;
    progress.advance(events.len() as u64);

    let live = Targets::live(context.prefix());
    let mut builders = Builders::new(true);
    for projection in &options.projections {
        let writer = || {
            BulkWriter::new(
                context.es.clone(),
                context.config.replay_bulk_docs,
                !options.dry_run,
                true,
            )
        };
        match projection {
            Projection::Customers => builders.customers = true,
            Projection::Search => {
                builders.search = Some(EsBuild {
                    index: live.search_index.clone(),
                    writer: writer(),
                });
            }
            Projection::History => {
                builders.history = Some(EsBuild {
                    index: live.history_index.clone(),
                    writer: writer(),
                });
            }
            Projection::Audit => {
                builders.audit = Some(EsBuild {
                    index: live.audit_index.clone(),
                    writer: writer(),
                });
            }
        }
    }
    for chunk in events.chunks(5000) {
        builders.feed(chunk).await?;
    }
    finish_builders(&mut builders, report).await?;
    if builders.customers {
        let views = builders.views();
        let written = if options.dry_run {
            views.len() as u64
        } else {
            let mut tx = context.owner().begin().await?;
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
            let written =
                writers::replace_tenant_views(&mut tx, Targets::LIVE_CUSTOMER_TABLE, &views)
                    .await?;
            tx.commit().await?;
            written
        };
        report
            .documents_written
            .insert(Projection::Customers.name(), written);
    }
    if options.dry_run {
        progress.finish();
        return Ok(());
    }

    progress.phase("removing stray documents");
    for build in [&builders.search, &builders.history, &builders.audit]
        .into_iter()
        .flatten()
    {
        context.es.refresh(&build.index).await?;
        let written = build.writer.ids().cloned().unwrap_or_default();
        let strays: Vec<String> = tenant_document_ids(&context.es, &build.index, tenant, read_to)
            .await?
            .into_iter()
            .filter(|id| !written.contains(id))
            .collect();
        report.strays_deleted +=
            writers::delete_documents(&context.es, &build.index, &strays).await?;
    }
    if builders.audit.is_some() {
        ensure_tenant_aliases(&context.es, context.prefix(), tenant.as_str()).await?;
    }

    progress.phase("catching up");
    let mut trail = Trail::default();
    let caught_up = catch_up(
        &context.live_sinks(),
        &options.projections,
        from,
        Some(tenant),
        &mut trail,
    )
    .await?;
    report.caught_up_events = caught_up.events;
    report.caught_up_rejected = caught_up.rejected;

    if options.verify {
        progress.phase("verifying");
        report.verification = verify_all(context, &options.projections, Some(tenant)).await?;
    }
    progress.finish();
    Ok(())
}

/// The ids of the tenant's documents in `index` at or before `position`.
async fn tenant_document_ids(
    es: &Es,
    index: &str,
    tenant: &TenantId,
    position: u64,
) -> Result<Vec<String>, EsError> {
    let hits = es
        .search_all(
            index,
            json!({
                "_source": false,
                "query": { "bool": { "filter": [
                    { "term": { "tenant_id": tenant.as_str() } },
                    { "range": { "global_position": { "lte": position } } },
                ]}},
                // Unique per document in every index (one document per event or customer).
                "sort": [{ "global_position": "asc" }],
            }),
        )
        .await?;
    Ok(hits
        .iter()
        .filter_map(|hit| hit["_id"].as_str().map(str::to_owned))
        .collect())
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub swaps: Vec<Swap>,
    pub caught_up_events: u64,
    pub seconds: f64,
    pub verification: Vec<Verification>,
}

impl RollbackReport {
    pub fn verified(&self) -> bool {
        self.verification.iter().all(Verification::passed)
    }
}

/// Puts the most recently retired generation of each projection back into service and
/// catches it up from where it was retired.
pub async fn rollback(
    config: &ProjectorConfig,
    projections: &[Projection],
) -> Result<RollbackReport, ReplayError> {
    let started = Instant::now();
    let context = Context::connect(config, projections.contains(&Projection::Customers)).await?;
    let _lock = ReplayLock::take(config, projections).await?;
    // Every projection's target first: either all roll back or none does.
    let mut targets = Vec::new();
    for projection in projections {
        let target = match index_kind(*projection) {
            None => tables::rollback_target(context.owner()).await?,
            Some(kind) => indices::rollback_target(&context.es, kind, context.prefix()).await?,
        };
        targets.push((
            *projection,
            target.ok_or(ReplayError::NothingToRollBack(projection.name()))?,
        ));
    }
    let mut swaps = Vec::new();
    let mut from: Option<LogPosition> = None;
    for (projection, (target, retired)) in targets {
        // The generation leaving service is marked retired at the returning one's point:
        // everything since then went into it, so catching it up from there is complete.
        let leaving = Retired::at(retired.position());
        let old = match index_kind(projection) {
            None => vec![tables::swap(context.owner(), &target, leaving).await?],
            Some(kind) => {
                indices::swap(&context.es, kind, context.prefix(), &target, leaving).await?
            }
        };
        from = Some(from.map_or(retired.position(), |f| f.min(retired.position())));
        swaps.push(Swap {
            projection: projection.name(),
            retired: old,
            in_service: target,
        });
    }
    let mut trail = Trail::default();
    let caught_up = catch_up(
        &context.live_sinks(),
        projections,
        from.unwrap_or(LogPosition::START),
        None,
        &mut trail,
    )
    .await?;
    let verification = verify_all(&context, projections, None).await?;
    Ok(RollbackReport {
        swaps,
        caught_up_events: caught_up.events,
        seconds: started.elapsed().as_secs_f64(),
        verification,
    })
}

/// `projector verify`: the verification of a replay, on its own.
pub async fn verify(
    config: &ProjectorConfig,
    projections: &[Projection],
    tenant: Option<&TenantId>,
) -> Result<Vec<Verification>, ReplayError> {
    let context = Context::connect(config, false).await?;
    verify_all(&context, projections, tenant).await
}
