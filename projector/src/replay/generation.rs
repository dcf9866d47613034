//! Generations of a projection's index or table: the one in service, the one being built,
//! and the previous ones kept for a rollback. Each records, once retired, where the log
//! stood when it stopped receiving writes, so a rollback knows where to catch it up from.

use chrono::Utc;
use event_store::LogPosition;
use serde::{Deserialize, Serialize};

/// A generation's name, e.g. `r20261122153000123`: sortable, lower case, valid both in an
/// index name and in a table name. The first generation is `v1`.
pub fn new_name() -> String {
    Utc::now().format("r%Y%m%d%H%M%S%3f").to_string()
}

/// What a generation records about itself (index `_meta`, table comment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationMeta {
    pub generation: String,
    /// Set when it is swapped out of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Catching up from here brings it back to date: the live projector had written
    /// everything before this into it.
    pub transaction_id: u64,
    pub global_position: u64,
    /// When it was swapped out (ms since the epoch); the latest is the one to roll back to.
    pub at_ms: i64,
}

impl Retired {
    pub fn at(position: LogPosition) -> Self {
        Self {
            transaction_id: position.transaction_id,
            global_position: position.global_position,
            at_ms: Utc::now().timestamp_millis(),
        }
    }

    pub fn position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }
}

/// Which of the generations out of service to delete: all but the `keep` most recently
/// retired, and every one never retired (a build that died before its swap: replays of a
/// projection are serialized, so no other replay can be writing it).
pub fn beyond_keep<T>(generations: Vec<(T, Option<i64>)>, keep: usize) -> Vec<T> {
    let (mut retired, never): (Vec<_>, Vec<_>) =
        generations.into_iter().partition(|(_, at)| at.is_some());
    retired.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
    never
        .into_iter()
        .chain(retired.into_iter().skip(keep))
        .map(|(generation, _)| generation)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_retired() {
        let retired = vec![
            ("a", Some(10)),
            ("failed", None),
            ("c", Some(30)),
            ("b", Some(20)),
        ];
        assert_eq!(beyond_keep(retired.clone(), 2), vec!["failed", "a"]);
        assert_eq!(beyond_keep(retired.clone(), 0).len(), 4);
        assert_eq!(beyond_keep(retired, 9), vec!["failed"]);
    }

    #[test]
    fn names_sort_by_time_and_fit_identifiers() {
        let name = new_name();
        assert_eq!(name.len(), 18);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
