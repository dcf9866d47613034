//! Verification: per tenant, the (stream, version) pairs a projection holds against the
//! event store's, as a count and an order-independent checksum, with samples of what
//! differs. The system keeps serving meanwhile, so each tenant is compared as of a
//! position `h`, its last event when its check starts:
//! - events after `h` are left out on both sides (history, audit);
//! - for the latest-state projections (customers, search), a document already at a version
//!   newer than the store's as of `h` counts as that version, provided the store has that
//!   version (the projection moved on, legitimately); streams begun after `h` are left out;
//! - a tenant that differs is read again, with the same `h`, up to the configured attempts,
//!   1 s apart: the live projector's lag closes, however busy the tenant keeps the store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use event_store::TenantId;
use schemas::AGGREGATE_NAMES;
use serde::Serialize;
use serde_json::json;

use crate::projections::{ProjectionError, ProjectionRef, Shape, Sinks};

/// A count and a checksum of (stream, version) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub checksum: u64,
}

impl Tally {
    fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut tally = Self::default();
        for (stream, version) in pairs {
            tally.count += 1;
            tally.checksum = tally.checksum.wrapping_add(fnv1a(stream, version));
        }
        tally
    }
}

/// FNV-1a of `stream:version`: stable across builds, so checksums can be compared between
/// runs and machines.
fn fnv1a(stream: &str, version: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream
        .bytes()
        .chain([b':'])
        .chain(version.to_string().into_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// One tenant's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TenantCheck {
    pub tenant: String,
    pub store: Tally,
    pub projection: Tally,
    /// Streams (customers, search) or events (history, audit) that changed after the
    /// position the tenant was compared at.
    pub in_flight: u64,
    /// Up to five of each, for the report.
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub attempts: u32,
}

impl TenantCheck {
    pub fn matches(&self) -> bool {
        self.store == self.projection
    }
}

/// A projection's verification.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub projection: &'static str,
    pub tenants: Vec<TenantCheck>,
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants = self.tenants.len();
        let mismatches: Vec<&TenantCheck> = self.mismatches().collect();
        if mismatches.is_empty() {
            let (count, in_flight) = self
                .tenants
                .iter()
                .fold((0, 0), |(c, f), t| (c + t.store.count, f + t.in_flight));
            return writeln!(
                f,
                "  verified             {}: {tenants} tenant(s) match the store ({count} (stream, version) pairs, count and checksum; {in_flight} changed meanwhile)",
                self.projection
            );
        }
        writeln!(
            f,
            "  MISMATCH             {}: {} of {tenants} tenant(s) differ from the store",
            self.projection,
            mismatches.len()
        )?;
        for check in mismatches {
            writeln!(
                f,
                "    {}: store {} / {:016x}, projection {} / {:016x}; missing [{}]; extra [{}]",
                check.tenant,
                check.store.count,
                check.store.checksum,
                check.projection.count,
                check.projection.checksum,
                check.missing.join(", "),
                check.extra.join(", "),
            )?;
        }
        Ok(())
    }
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.tenants.iter().all(TenantCheck::matches)
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &TenantCheck> {
        self.tenants.iter().filter(|t| !t.matches())
    }
}

/// What verification reads.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The live targets, read as readers read them.
    pub sinks: Sinks,
    pub attempts: u32,
    pub pause: Duration,
}

impl Verifier {
    /// Verifies `projection` for `tenant`, or for every tenant with events (and, in
    /// Elasticsearch, every tenant with documents).
    pub async fn verify(
        &self,
        projection: ProjectionRef,
        tenant: Option<&TenantId>,
    ) -> Result<Verification, ProjectionError> {
        let store = &self.sinks.store;
        let mut tenants: BTreeSet<TenantId> = match tenant {
            Some(tenant) => BTreeSet::from([tenant.clone()]),
            None => store
                .tenants_with_events()
                .await?
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
        };
        if tenant.is_none() {
            tenants.extend(self.projection_tenants(projection).await?);
        }
        let mut checks: BTreeMap<TenantId, TenantCheck> = BTreeMap::new();
        let mut horizons: BTreeMap<TenantId, u64> = BTreeMap::new();
        let mut pending: Vec<TenantId> = tenants.into_iter().collect();
        for attempt in 1..=self.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(self.pause).await;
            }
            if projection.index_kind().is_some() {
                self.sinks
                    .es
                    .refresh(self.sinks.targets.of(projection))
                    .await
                    .ok();
            }
            let mut still = Vec::new();
            for tenant in pending {
                let horizon = match horizons.get(&tenant) {
                    Some(horizon) => *horizon,
                    None => {
                        let mut tx = store.begin(&tenant).await?;
                        let horizon = tx.last_position().await?;
                        tx.commit().await?;
                        horizons.insert(tenant.clone(), horizon);
                        horizon
                    }
                };
                let mut check = self.check(projection, &tenant, horizon).await?;
                check.attempts = attempt;
                if !check.matches() {
                    still.push(tenant.clone());
                }
                checks.insert(tenant, check);
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
        }
        Ok(Verification {
            projection: projection.name(),
            tenants: checks.into_values().collect(),
        })
    }

    async fn check(
        &self,
        projection: ProjectionRef,
        tenant: &TenantId,
        horizon: u64,
    ) -> Result<TenantCheck, ProjectionError> {
        let held = projection.held(&self.sinks, tenant).await?;
        let mut tx = self.sinks.store.begin(tenant).await?;
        // The events of the aggregates the projection reads: one category is filtered by
        // the store, several in memory.
        let aggregates = projection.aggregates();
        let reads_all = AGGREGATE_NAMES.iter().all(|a| aggregates.contains(a));
        let category = match aggregates {
            [one] if !reads_all => Some(*one),
            _ => None,
        };
        let mut logged = tx.logged_events(category).await?;
        tx.commit().await?;
        if !reads_all && category.is_none() {
            logged.retain(|event| aggregates.contains(&event.stream_id.category()));
        }

        let (expected, held, in_flight) = if projection.shape() == Shape::LatestPerStream {
            // Per stream: its version as of the horizon (if it had begun) and its last.
            let mut versions: BTreeMap<String, (Option<u64>, u64)> = BTreeMap::new();
            for event in &logged {
                let entry = versions
                    .entry(event.stream_id.to_string())
                    .or_insert((None, 0));
                if event.global_position <= horizon {
                    entry.0 = entry.0.max(Some(event.stream_version));
                }
                entry.1 = entry.1.max(event.stream_version);
            }
            let expected: BTreeSet<(String, u64)> = versions
                .iter()
                .filter_map(|(stream, (at_horizon, _))| at_horizon.map(|v| (stream.clone(), v)))
                .collect();
            let mut held_pairs = BTreeSet::new();
            for (stream, version, _) in held {
                match versions.get(&stream) {
                    // Begun after the horizon: not compared.
                    Some((None, _)) => {}
                    // Moved on to a version the store has: counts as at the horizon.
                    Some((Some(at_horizon), last)) if version > *at_horizon && version <= *last => {
                        held_pairs.insert((stream, *at_horizon));
                    }
                    _ => {
                        held_pairs.insert((stream, version));
                    }
                }
            }
            let in_flight = versions
                .values()
                .filter(|(at_horizon, last)| *at_horizon != Some(*last))
                .count() as u64;
            (expected, held_pairs, in_flight)
        } else {
            let in_flight = logged
                .iter()
                .filter(|e| e.global_position > horizon)
                .count() as u64;
            let expected: BTreeSet<(String, u64)> = logged
                .into_iter()
                .filter(|e| e.global_position <= horizon)
                .map(|e| (e.stream_id.to_string(), e.stream_version))
                .collect();
            let held: BTreeSet<(String, u64)> = held
                .into_iter()
                .filter(|(_, _, position)| *position <= horizon)
                .map(|(stream, version, _)| (stream, version))
                .collect();
            (expected, held, in_flight)
        };
        let sample = |set: &mut dyn Iterator<Item = &(String, u64)>| -> Vec<String> {
            set.take(5).map(|(s, v)| format!("{s}@{v}")).collect()
        };
        Ok(TenantCheck {
            tenant: tenant.to_string(),
            store: Tally::of(expected.iter().map(|(s, v)| (s.as_str(), *v))),
            projection: Tally::of(held.iter().map(|(s, v)| (s.as_str(), *v))),
            in_flight,
            missing: sample(&mut expected.difference(&held)),
            extra: sample(&mut held.difference(&expected)),
            attempts: 0,
        })
    }

    /// Tenants with documents in the projection's index (a document of a tenant without
    /// events would otherwise go unnoticed).
    async fn projection_tenants(
        &self,
        projection: ProjectionRef,
    ) -> Result<Vec<TenantId>, ProjectionError> {
        if projection.index_kind().is_none() {
            return Ok(Vec::new());
        }
        let (status, answer) = self
            .sinks
            .es
            .request(
                elasticsearch::http::Method::Post,
                &format!("/{}/_search", self.sinks.targets.of(projection)),
                Some(json!({
                    "size": 0,
                    "aggs": { "tenants": { "terms": { "field": "tenant_id", "size": 10000 } } }
                })),
                &[404],
            )
            .await?;
        if status == 404 {
            return Ok(Vec::new());
        }
        Ok(answer["aggregations"]["tenants"]["buckets"]
            .as_array()
            .map(|buckets| {
                buckets
                    .iter()
                    .filter_map(|b| b["key"].as_str())
                    .filter_map(|t| TenantId::parse(t).ok())
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_ignores_order_and_sees_every_pair() {
        let a = Tally::of([("customer-1", 1), ("customer-2", 3)]);
        let b = Tally::of([("customer-2", 3), ("customer-1", 1)]);
        assert_eq!(a, b);
        assert_ne!(a, Tally::of([("customer-1", 1), ("customer-2", 2)]));
        assert_ne!(a.checksum, Tally::of([("customer-1", 1)]).checksum);
        // A known value, so a change of the hash shows up here and not as a surprise
        // between two versions of the tool.
        assert_eq!(fnv1a("a", 1), 0xe661e41904a09e69);
    }
}
