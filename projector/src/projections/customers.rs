//! The PostgreSQL read model: one `customer_views` row per customer, its latest state.
//! Each touched stream is read whole from the event store and folded; the row is
//! upserted only when the folded version is newer than the stored one.

use serde_json::json;

use super::{Incoming, ProjectionError, Rejected, Sinks, TouchedStreams, read_streams};
use crate::views::{self, CustomerView};

pub async fn apply(sinks: &Sinks, batch: &[Incoming]) -> Result<Rejected, ProjectionError> {
    let mut rejected = Vec::new();
    for (tenant, streams) in TouchedStreams::of(batch).by_tenant {
        let mut tx = sinks.store.begin(&tenant).await?;
        let mut envelopes = read_streams(&mut tx, &streams).await?;
        for (stream, touched) in &streams {
            let events = envelopes.remove(stream).unwrap_or_default();
            match views::fold(&events) {
                Ok(views) => {
                    if let Some(view) = views.last() {
                        upsert(&mut tx, view).await?;
                    }
                }
                Err(error) => {
                    let reason = format!("stream {stream} cannot be decoded: {error}");
                    rejected.extend(
                        touched
                            .records
                            .iter()
                            .map(|record| (*record, reason.clone())),
                    );
                }
            }
        }
        tx.commit().await?;
    }
    Ok(rejected)
}

/// Writes `view` unless the row already holds this version or a newer one.
pub async fn upsert(
    tx: &mut event_store::TenantTransaction<'_>,
    view: &CustomerView,
) -> Result<(), ProjectionError> {
    let address = view.address.as_ref().map(|a| json!(a));
    sqlx::query!(
        r#"
        INSERT INTO customer_views (tenant_id, customer_id, version, global_position, name, email, phone,
                                    address, tags, archived, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
            version = EXCLUDED.version, global_position = EXCLUDED.global_position,
            name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
            address = EXCLUDED.address, tags = EXCLUDED.tags, archived = EXCLUDED.archived,
            updated_at = EXCLUDED.updated_at
        WHERE customer_views.version < EXCLUDED.version
        "#,
        view.tenant_id,
        view.customer_id,
        i64::try_from(view.version).unwrap_or(i64::MAX),
        i64::try_from(view.global_position).unwrap_or(i64::MAX),
        view.name,
        view.email,
        view.phone,
        address,
        &view.tags,
        view.archived,
        view.created_at,
        view.updated_at,
    )
    .execute(tx.connection())
    .await?;
    Ok(())
}
