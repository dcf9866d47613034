//! Catching a projection up from a log position to the settled end of the log, through
//! the same code the live projector runs (idempotent, order-safe writes), into whichever
//! targets the sinks name: the index or table being built before its swap, the live ones
//! after it.

use std::time::{Duration, Instant};

use event_store::{LogPosition, TenantId};
use schemas::EventEnvelope;

use crate::projections::{ProjectionError, ProjectionRef, Sinks};

/// How far a catch-up got.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaughtUp {
    pub position: LogPosition,
    pub events: u64,
    /// Events a projection could not use (they would be parked by the live projector).
    pub rejected: u64,
}

const PAGE: u32 = 2000;

/// Reads the log after `from` until it is read to its settled end, applying each page to
/// every projection. `tenant` keeps only that tenant's events. `trail` records where the
/// log stood when, for choosing the retirement position.
pub async fn catch_up(
    sinks: &Sinks,
    projections: &[ProjectionRef],
    from: LogPosition,
    tenant: Option<&TenantId>,
    trail: &mut Trail,
) -> Result<CaughtUp, ProjectionError> {
    let mut caught_up = CaughtUp {
        position: from,
        ..CaughtUp::default()
    };
    loop {
        let page = sinks
            .store
            .read_global_log(caught_up.position, PAGE)
            .await?;
        let Some(last) = page.last() else {
            return Ok(caught_up);
        };
        caught_up.position = last.position;
        let full = page.len() == PAGE as usize;
        let events: Vec<EventEnvelope> = page
            .into_iter()
            .map(|e| e.event)
            .filter(|e| tenant.is_none_or(|t| e.tenant_id == *t))
            .collect();
        caught_up.events += events.len() as u64;
        for projection in projections {
            let (usable, unusable): (Vec<EventEnvelope>, Vec<EventEnvelope>) = events
                .iter()
                .filter(|e| projection.aggregates().contains(&e.stream_id.category()))
                .cloned()
                .partition(|e| projection.check(e).is_ok());
            caught_up.rejected += unusable.len() as u64;
            let rejected = projection.apply(sinks, &usable).await?;
            caught_up.rejected += rejected.len() as u64;
        }
        trail.record(caught_up.position);
        if !full {
            return Ok(caught_up);
        }
    }
}

/// Catches up repeatedly until one pass finds fewer than `small` events, so the gap left
/// for the moment of the swap is as small as a single pass (at most `passes` passes).
pub async fn catch_up_closely(
    sinks: &Sinks,
    projections: &[ProjectionRef],
    from: LogPosition,
    trail: &mut Trail,
) -> Result<CaughtUp, ProjectionError> {
    const SMALL: u64 = 200;
    const PASSES: usize = 10;
    let mut total = CaughtUp {
        position: from,
        ..CaughtUp::default()
    };
    for _ in 0..PASSES {
        let pass = catch_up(sinks, projections, total.position, None, trail).await?;
        total.position = pass.position;
        total.events += pass.events;
        total.rejected += pass.rejected;
        if pass.events < SMALL {
            break;
        }
    }
    Ok(total)
}

/// Where the log stood at which moments during a replay.
#[derive(Debug, Default)]
pub struct Trail {
    marks: Vec<(Instant, LogPosition)>,
}

impl Trail {
    pub fn record(&mut self, position: LogPosition) {
        self.marks.push((Instant::now(), position));
    }

    /// The furthest position reached at least `margin` ago (the start of the log if none).
    /// The index swapped out was written by the live projector up to about the swap; taking
    /// the position from `margin` before it leaves room for that projector's lag.
    pub fn before(&self, margin: Duration) -> LogPosition {
        let Some(cutoff) = Instant::now().checked_sub(margin) else {
            return LogPosition::START;
        };
        self.marks
            .iter()
            .filter(|(at, _)| *at <= cutoff)
            .map(|(_, position)| *position)
            .max()
            .unwrap_or(LogPosition::START)
    }
}
