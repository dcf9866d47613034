//! The PostgreSQL read model: one `customer_views` row per customer, its latest state.
//! Each touched stream is read whole from the event store and folded; the row is
//! upserted only when the folded version is newer than the stored one.

use read_model::progress;
use schemas::EventEnvelope;
use serde_json::json;
use sqlx::AssertSqlSafe;

use super::{Projection, ProjectionError, Rejected, Sinks, TouchedStreams, read_streams};
use crate::views::{self, CustomerView};

pub async fn apply(sinks: &Sinks, batch: &[EventEnvelope]) -> Result<Rejected, ProjectionError> {
    let table = sinks.targets.of(Projection::Customers);
    let mut rejected = Vec::new();
    // Readers waiting for a version are told when the rows they wait for commit; a table a
    // replay is building has no readers yet.
    let live = table == read_model::customers::TABLE;
    for (tenant, streams) in TouchedStreams::of(batch).by_tenant {
        let mut tx = sinks.store.begin(&tenant).await?;
        let mut envelopes = read_streams(&mut tx, &streams).await?;
        let mut written = Vec::with_capacity(streams.len());
        for (stream, touched) in &streams {
            let events = envelopes.remove(stream).unwrap_or_default();
            match views::fold(&events) {
                Ok(views) => {
                    if let Some(view) = views.last() {
                        upsert(&mut tx, table, view).await?;
                        written.push((view.customer_id, view.version));
                    }
                }
                Err(error) => rejected.extend(touched.rejected(stream, &error)),
            }
        }
        if live {
            for note in progress::payloads(tenant.as_str(), &written) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(progress::CHANNEL)
                    .bind(note)
                    .execute(tx.connection())
                    .await?;
            }
        }
        tx.commit().await?;
    }
    Ok(rejected)
}

/// Writes `view` into `table` (`customer_views`, or the table a replay is building)
/// unless the row already holds this version or a newer one.
pub async fn upsert(
    tx: &mut event_store::TenantTransaction<'_>,
    table: &str,
    view: &CustomerView,
) -> Result<(), ProjectionError> {
    assert!(
        is_plain_identifier(table),
        "table names come from Chronicle itself, never from input: {table}"
    );
    let address = view.address.as_ref().map(|a| json!(a));
    // The table name varies (a replay writes into the table it builds), so this is
    // not a checked `query!`; the columns are the migration's.
    let statement = format!(
        "INSERT INTO {table} (tenant_id, customer_id, version, global_position, name, email, phone,
                              address, tags, archived, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
             version = EXCLUDED.version, global_position = EXCLUDED.global_position,
             name = EXCLUDED.name, email = EXCLUDED.email, phone = EXCLUDED.phone,
             address = EXCLUDED.address, tags = EXCLUDED.tags, archived = EXCLUDED.archived,
             updated_at = EXCLUDED.updated_at
         WHERE {table}.version < EXCLUDED.version"
    );
    sqlx::query(AssertSqlSafe(statement))
        .bind(&view.tenant_id)
        .bind(view.customer_id)
        .bind(i64::try_from(view.version).unwrap_or(i64::MAX))
        .bind(i64::try_from(view.global_position).unwrap_or(i64::MAX))
        .bind(&view.name)
        .bind(&view.email)
        .bind(&view.phone)
        .bind(address)
        .bind(&view.tags)
        .bind(view.archived)
        .bind(view.created_at)
        .bind(view.updated_at)
        .execute(tx.connection())
        .await?;
    Ok(())
}

/// Lower-case ASCII letters, digits and `_`, starting with a letter: safe to splice into SQL.
pub fn is_plain_identifier(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
