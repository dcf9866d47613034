//! Repairing one tenant in place (`--tenant`): its documents re-indexed with
//! `external_gte` (the same versions overwrite) and the ones the store does not explain
//! removed, its read-model rows replaced in one transaction; then a catch-up from a horizon
//! taken before the read, and verification of that tenant. Other tenants are not written.

use event_store::{TenantId, TenantTransaction};
use read_model::indices::ensure_tenant_aliases;
use read_model::{Es, EsError};
use serde_json::json;

use super::build::{Builders, EsBuild};
use super::catch_up::{Trail, catch_up};
use super::context::Context;
use super::progress::Progress;
use super::rebuild::finish_builders;
use super::report::ReplayReport;
use super::writers::{self, BulkWriter};
use super::{ReplayError, ReplayOptions, verify_all};
use crate::projections::{Projection, Storage};

pub async fn rebuild_tenant(
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

    let mut builders = Builders::new(true);
    for projection in &options.projections {
        match projection.storage() {
            Storage::Table => builders.customers = true,
            Storage::Index(_) => {
                let build = EsBuild {
                    index: projection.live_target(context.prefix()),
                    writer: BulkWriter::new(
                        context.es.clone(),
                        context.config.replay_bulk_docs,
                        !options.dry_run,
                        true,
                    ),
                };
                builders.indices.insert(*projection, build);
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
            // The owner role, scoped to the tenant like any writer: row-level security
            // confines the replacement to its rows.
            let mut tx = TenantTransaction::begin(context.owner(), tenant).await?;
            let written = writers::replace_tenant_views(
                tx.connection(),
                read_model::customers::TABLE,
                &views,
            )
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
    for build in builders.indices.values() {
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
    if builders.indices.contains_key(&Projection::Audit) {
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
