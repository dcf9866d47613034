//! What a replay or a rollback did, as data (`--json`) and as text ([`std::fmt::Display`]):
//! events read, documents written, swaps, seconds, and the verification.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::verify::Verification;

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

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenant = self
            .tenant
            .as_ref()
            .map(|t| format!(" for tenant {t}"))
            .unwrap_or_default();
        let dry_run = if self.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        writeln!(
            f,
            "replay of {}{tenant}{dry_run}",
            self.projections.join(", ")
        )?;
        writeln!(f, "  events read          {}", self.events_read)?;
        let written = if self.dry_run {
            "documents to write "
        } else {
            "documents written  "
        };
        for (projection, count) in &self.documents_written {
            writeln!(f, "  {written}  {count} ({projection})")?;
        }
        if self.documents_refused > 0 {
            writeln!(
                f,
                "  documents refused    {} (first: {})",
                self.documents_refused,
                self.first_refusal.as_deref().unwrap_or("-")
            )?;
        }
        if self.undecodable_stream_count > 0 || self.undecodable_events > 0 {
            writeln!(
                f,
                "  skipped              {} stream(s), {} event(s) that do not decode",
                self.undecodable_stream_count, self.undecodable_events
            )?;
            for stream in &self.undecodable_streams {
                writeln!(f, "                       {stream}")?;
            }
        }
        if !self.dry_run {
            let rejected = if self.caught_up_rejected > 0 {
                format!(
                    " ({} not usable: the live projector parks them in the dead-letter topic)",
                    self.caught_up_rejected
                )
            } else {
                String::new()
            };
            writeln!(
                f,
                "  caught up            {} event(s){rejected}",
                self.caught_up_events
            )?;
        }
        for swap in &self.swaps {
            writeln!(f, "{swap}")?;
        }
        if self.strays_deleted > 0 {
            writeln!(f, "  stray docs removed   {}", self.strays_deleted)?;
        }
        if !self.pruned.is_empty() {
            writeln!(f, "  pruned               {}", self.pruned.join(", "))?;
        }
        let rate = self.events_read as f64 / self.seconds.max(0.001);
        writeln!(
            f,
            "  seconds              {:.1} ({rate:.0} events/s)",
            self.seconds
        )?;
        for verification in &self.verification {
            write!(f, "{verification}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Swap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  swapped              {}: {} -> {}",
            self.projection,
            self.retired.join(", "),
            self.in_service
        )
    }
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rollback")?;
        for swap in &self.swaps {
            writeln!(f, "{swap}")?;
        }
        writeln!(
            f,
            "  caught up            {} event(s)",
            self.caught_up_events
        )?;
        writeln!(f, "  seconds              {:.1}", self.seconds)?;
        for verification in &self.verification {
            write!(f, "{verification}")?;
        }
        Ok(())
    }
}
