//! A full rebuild: the whole global log folded into a new generation of each projection,
//! which is caught up, swapped in atomically, caught up again through the live names, and
//! verified; old generations beyond the configured number are pruned.

use std::time::Duration;

use event_store::{EventStore, LogPosition};
use schemas::EventEnvelope;
use tokio::sync::mpsc;

use super::build::Builders;
use super::catch_up::{Trail, catch_up, catch_up_closely};
use super::context::Context;
use super::generation::{self, Retired};
use super::progress::Progress;
use super::report::{ReplayReport, Swap};
use super::{ReplayError, ReplayOptions, indices, tables, verify_all};
use crate::projections::{ProjectionRef, Storage};

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

/// What a full rebuild is writing into (each projection's new generation), for the swap
/// or, on failure, the clean-up.
#[derive(Debug, Default)]
struct BuildTargets {
    created: Vec<(ProjectionRef, String)>,
}

pub async fn rebuild_all(
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
    let outcome = async {
        let mut builds = Vec::new();
        for &projection in &options.projections {
            let name = match projection.storage() {
                Storage::Table(live) if options.dry_run => tables::table_of(live, &generation),
                Storage::Table(live) => {
                    tables::create_build_table(context.owner(), live, &generation).await?
                }
                Storage::Index(kind) if options.dry_run => {
                    kind.index(context.prefix(), &generation)
                }
                Storage::Index(kind) => {
                    indices::create_build_index(&context.es, kind, context.prefix(), &generation)
                        .await?
                }
            };
            if !options.dry_run {
                targets.created.push((projection, name.clone()));
            }
            builds.push((
                projection,
                context.build_target(name, None, options.dry_run),
            ));
        }
        let mut builders = Builders::new(builds);

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
        if options.dry_run {
            return Ok(());
        }

        progress.phase("restoring index settings");
        for (projection, name) in &targets.created {
            match projection.storage() {
                Storage::Table(live) => {
                    tables::finish_build_table(context.owner(), live, name).await?
                }
                Storage::Index(kind) => {
                    indices::finish_build_index(&context.es, kind, name).await?
                }
            }
        }

        progress.phase("catching up before the swap");
        let mut build_sinks = context.live_sinks();
        for (projection, name) in &targets.created {
            build_sinks.targets.set(*projection, name.clone());
        }
        let before = catch_up_closely(&build_sinks, &options.projections, end, &mut trail).await?;
        for (projection, name) in &targets.created {
            if projection.index_kind().is_some() {
                context.es.refresh(name).await?;
            }
        }

        progress.phase("swapping");
        let retired = Retired::at(trail.before(RETIREMENT_MARGIN));
        for (projection, name) in std::mem::take(&mut targets.created) {
            let old = match projection.storage() {
                Storage::Table(live) => {
                    vec![tables::swap(context.owner(), live, &name, retired).await?]
                }
                Storage::Index(kind) => {
                    indices::swap(&context.es, kind, context.prefix(), &name, retired).await?
                }
            };
            report.swaps.push(Swap {
                projection: projection.name(),
                retired: old,
                in_service: name,
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

/// Writes the builders' last documents, waits for every write, and reports the outcome.
pub(super) async fn finish_builders(
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
        report.undecodable_events += outcome.undecodable_events;
    }
    let undecodable = &builders.folded.undecodable;
    report.undecodable_stream_count = undecodable.len() as u64;
    report.undecodable_streams = undecodable
        .iter()
        .take(10)
        .map(|(stream, reason)| format!("{stream}: {reason}"))
        .collect();
    Ok(())
}

/// Removes what a failed rebuild had created (best effort: pruning removes leftovers).
async fn discard(context: &Context, targets: BuildTargets) {
    for (projection, name) in targets.created {
        let removed = match projection.storage() {
            Storage::Table(live) => tables::drop_table(context.owner(), live, &name)
                .await
                .map_err(|e| e.to_string()),
            Storage::Index(_) => indices::delete_index(&context.es, &name)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = removed {
            tracing::warn!(%error, target = name, "could not remove the unfinished build");
        }
    }
}

async fn prune(
    context: &Context,
    projections: &[ProjectionRef],
) -> Result<Vec<String>, ReplayError> {
    let keep = context.config.replay_keep;
    let mut pruned = Vec::new();
    for projection in projections {
        match projection.storage() {
            Storage::Table(live) => {
                pruned.extend(tables::prune(context.owner(), live, keep).await?)
            }
            Storage::Index(kind) => {
                pruned.extend(indices::prune(&context.es, kind, context.prefix(), keep).await?);
            }
        }
    }
    Ok(pruned)
}
