//! The PostgreSQL read model: one `customer_views` row per customer, its latest state.
//! Each touched stream is read whole from the event store and folded; the row is
//! upserted only when the folded version is newer than the stored one. A rebuild loads a
//! new table with `COPY` ([`rows`]); repairing a tenant replaces its rows in one
//! transaction.

pub mod rows;

use event_store::{TenantId, TenantTransaction};
use read_model::progress;
use schemas::{CustomerEvent, DomainEvent, EventEnvelope, StreamId};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::{
    About, Held, Projection, ProjectionError, Rejected, Shape, Sinks, Storage, TouchedStreams,
    read_streams,
};
use crate::replay::ReplayError;
use crate::replay::build::{Build, BuildOutcome, BuildTarget, DynBuild};
use crate::views::{self, CustomerView, Folded};

/// The customer read model in PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Customers;

impl Projection for Customers {
    const ABOUT: About = About::new(
        "customers",
        &[CustomerEvent::AGGREGATE],
        Storage::Table(read_model::customers::TABLE),
        Shape::LatestPerStream,
    );

    async fn apply(
        &self,
        sinks: &Sinks,
        batch: &[EventEnvelope],
    ) -> Result<Rejected, ProjectionError> {
        let table = sinks.targets.of(self);
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

    async fn held(&self, sinks: &Sinks, tenant: &TenantId) -> Result<Vec<Held>, ProjectionError> {
        let table = sinks.targets.of(self);
        assert!(
            is_plain_identifier(table),
            "table names are Chronicle's own"
        );
        let mut tx = sinks.store.begin(tenant).await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT customer_id, version, global_position FROM {table}"
        )))
        .fetch_all(tx.connection())
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let id: Uuid = row.get(0);
                let version: i64 = row.get(1);
                let position: i64 = row.get(2);
                (
                    format!("{}-{id}", CustomerEvent::AGGREGATE),
                    version as u64,
                    position as u64,
                )
            })
            .collect())
    }

    /// Deletes the customer's row (row-level security keeps the delete in the tenant).
    async fn forget(
        &self,
        sinks: &Sinks,
        tenant: &TenantId,
        subject: &StreamId,
    ) -> Result<u64, ProjectionError> {
        let Some(customer) = customer_of(subject) else {
            return Ok(0);
        };
        let table = sinks.targets.of(self);
        assert!(
            is_plain_identifier(table),
            "table names are Chronicle's own"
        );
        let mut tx = sinks.store.begin(tenant).await?;
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND customer_id = $2"
        )))
        .bind(tenant.as_str())
        .bind(customer)
        .execute(tx.connection())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    fn builder(&self, target: BuildTarget) -> Box<dyn DynBuild> {
        Box::new(CustomersBuild { target })
    }
}

/// The customer a stream is about, if it is a customer stream.
pub fn customer_of(stream: &StreamId) -> Option<Uuid> {
    (stream.category() == CustomerEvent::AGGREGATE)
        .then(|| Uuid::parse_str(stream.instance_id()).ok())
        .flatten()
}

/// Writes `view` into `table` (`customer_views`, or the table a replay is building)
/// unless the row already holds this version or a newer one.
pub async fn upsert(
    tx: &mut TenantTransaction<'_>,
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

/// A rebuild of the read model: the views folded from the log, loaded at the end.
struct CustomersBuild {
    target: BuildTarget,
}

impl Build for CustomersBuild {
    fn reads_views(&self) -> bool {
        true
    }

    // Latest state only: nothing is written while the log is read.

    async fn finish(&mut self, folded: &Folded) -> Result<BuildOutcome, ReplayError> {
        let views = folded.views();
        let target = &self.target;
        let written = if target.dry_run {
            views.len() as u64
        } else if let Some(tenant) = &target.tenant {
            // The owner role, scoped to the tenant like any writer: row-level security
            // confines the replacement to its rows.
            let mut tx = TenantTransaction::begin(target.owner(), tenant).await?;
            let written = rows::replace_tenant_views(tx.connection(), &target.name, &views).await?;
            tx.commit().await?;
            written
        } else {
            let mut conn = target.owner().acquire().await?;
            rows::copy_views(&mut conn, &target.name, &views).await?
        };
        Ok(BuildOutcome {
            written,
            ..BuildOutcome::default()
        })
    }
}
