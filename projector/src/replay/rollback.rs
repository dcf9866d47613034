//! Rollback: the most recently retired generation of each projection back into service
//! (the same atomic swap), caught up from where it was retired, then verified.

use std::time::Instant;

use event_store::LogPosition;

use super::catch_up::{Trail, catch_up};
use super::context::{Context, ReplayLock};
use super::generation::Retired;
use super::report::{RollbackReport, Swap};
use super::{ReplayError, indices, tables, verify_all};
use crate::config::ProjectorConfig;
use crate::projections::{ProjectionRef, Storage};

/// Puts the most recently retired generation of each projection back into service and
/// catches it up from where it was retired.
pub async fn rollback(
    config: &ProjectorConfig,
    projections: &[ProjectionRef],
) -> Result<RollbackReport, ReplayError> {
    let started = Instant::now();
    let context = Context::connect(config, Context::writes_tables(projections)).await?;
    let _lock = ReplayLock::take(config, projections).await?;
    // Every projection's target first: either all roll back or none does.
    let mut targets = Vec::new();
    for projection in projections {
        let target = match projection.storage() {
            Storage::Table(live) => tables::rollback_target(context.owner(), live).await?,
            Storage::Index(kind) => {
                indices::rollback_target(&context.es, kind, context.prefix()).await?
            }
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
        let old = match projection.storage() {
            Storage::Table(live) => {
                vec![tables::swap(context.owner(), live, &target, leaving).await?]
            }
            Storage::Index(kind) => {
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
