//! Repairing one tenant in place (`--tenant`): its documents re-indexed with
//! `external_gte` (the same versions overwrite) and the ones the store does not explain
//! removed, its read-model rows replaced in one transaction; then a catch-up from a horizon
//! taken before the read, and verification of that tenant. Other tenants are not written.

use event_store::TenantId;
use read_model::indices::ensure_tenant_aliases;
use serde_json::json;

use super::build::Builders;
use super::catch_up::{Trail, catch_up};
use super::context::Context;
use super::progress::Progress;
use super::rebuild::finish_builders;
use super::report::ReplayReport;
use super::{ReplayError, ReplayOptions, verify_all};
use crate::projections::streams;

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

    let mut builders = Builders::new(options.projections.iter().map(|&projection| {
        let live = projection.live_target(context.prefix());
        (
            projection,
            context.build_target(live, Some(tenant.clone()), options.dry_run),
        )
    }));
    for chunk in events.chunks(5000) {
        builders.feed(chunk).await?;
    }
    finish_builders(&mut builders, report).await?;
    if options.dry_run {
        progress.finish();
        return Ok(());
    }

    progress.phase("removing stray documents");
    let mut repaired_indices = false;
    for (projection, build) in builders.builds() {
        if projection.index_kind().is_none() {
            continue;
        }
        repaired_indices = true;
        let index = projection.live_target(context.prefix());
        context.es.refresh(&index).await?;
        let written = build.written_ids().cloned().unwrap_or_default();
        let read = json!({ "range": { "global_position": { "lte": read_to } } });
        let strays: Vec<_> = streams::tenant_documents(&context.es, &index, tenant, read)
            .await?
            .into_iter()
            .filter(|(_, id)| !written.contains(id))
            .collect();
        report.strays_deleted += streams::delete_documents(&context.es, &strays).await?;
    }
    if repaired_indices {
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
