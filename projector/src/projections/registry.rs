//! The one list of projections. Each runs as its own consumer group; the CLI, health,
//! replay and verification take their names and their order from here.

use super::{ProjectionRef, audit, customers, history, search};
use read_model::indices::IndexKind;

/// Every projection, in the order they are started, rebuilt and reported.
pub static ALL: &[ProjectionRef] = &[
    &customers::Customers,
    &search::Search,
    &history::History,
    &audit::Audit,
];

/// The projection called `name`.
pub fn named(name: &str) -> Option<ProjectionRef> {
    ALL.iter()
        .copied()
        .find(|projection| projection.name() == name)
}

/// Every projection's name.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|projection| projection.name())
}

/// The Elasticsearch indices the projections keep.
pub fn index_kinds() -> Vec<IndexKind> {
    ALL.iter()
        .filter_map(|projection| projection.index_kind())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let names: BTreeSet<&str> = names().collect();
        assert_eq!(names.len(), ALL.len());
        for name in names {
            assert_eq!(named(name).map(|p| p.name()), Some(name));
        }
        assert!(named("nothing").is_none());
    }

    #[test]
    fn every_projection_reads_aggregates_that_exist() {
        for projection in ALL {
            assert!(!projection.aggregates().is_empty(), "{}", projection.name());
            for aggregate in projection.aggregates() {
                assert!(
                    schemas::AggregateType::named(aggregate).is_some(),
                    "{} reads an unknown aggregate {aggregate}",
                    projection.name()
                );
            }
        }
    }
}
