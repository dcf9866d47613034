//! Where a rebuild's documents go: bulk writes to Elasticsearch with one request in flight
//! while the next fills, and `COPY` (or, in place, one transaction) into PostgreSQL.

use std::collections::HashSet;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::task::JoinHandle;

use crate::projections::customers::is_plain_identifier;
use crate::views::CustomerView;
use read_model::{Es, EsError};

/// Bulk-indexes documents, a batch at a time, keeping one request in flight.
#[derive(Debug)]
pub struct BulkWriter {
    es: Es,
    /// `None`: a dry run, documents are counted and dropped.
    send: bool,
    batch_docs: usize,
    lines: Vec<Value>,
    in_flight: Option<JoinHandle<Result<BulkOutcome, EsError>>>,
    /// Ids written, for an in-place rebuild that must then remove the tenant's strays.
    ids: Option<HashSet<String>>,
    pub outcome: BulkOutcome,
}

/// What the bulk requests came to.
#[derive(Debug, Default, Clone)]
pub struct BulkOutcome {
    /// Indexed, or already there at this or a newer version.
    pub written: u64,
    /// Refused by Elasticsearch for the document itself (mapping, size).
    pub refused: u64,
    pub first_refusal: Option<String>,
}

impl BulkOutcome {
    fn add(&mut self, other: BulkOutcome) {
        self.written += other.written;
        self.refused += other.refused;
        if self.first_refusal.is_none() {
            self.first_refusal = other.first_refusal;
        }
    }
}

impl BulkWriter {
    pub fn new(es: Es, batch_docs: usize, send: bool, track_ids: bool) -> Self {
        Self {
            es,
            send,
            batch_docs: batch_docs.max(1),
            lines: Vec::new(),
            in_flight: None,
            ids: track_ids.then(HashSet::new),
            outcome: BulkOutcome::default(),
        }
    }

    /// Queues one `index` action and its document; sends when the batch is full.
    pub async fn push(&mut self, action: Value, document: Value) -> Result<(), EsError> {
        if let Some(ids) = &mut self.ids
            && let Some(id) = action["index"]["_id"].as_str()
        {
            ids.insert(id.to_owned());
        }
        self.lines.push(action);
        self.lines.push(document);
        if self.lines.len() / 2 >= self.batch_docs {
            self.send_batch().await?;
        }
        Ok(())
    }

    async fn send_batch(&mut self) -> Result<(), EsError> {
        self.wait().await?;
        let lines = std::mem::take(&mut self.lines);
        if lines.is_empty() {
            return Ok(());
        }
        if !self.send {
            self.outcome.written += (lines.len() / 2) as u64;
            return Ok(());
        }
        let es = self.es.clone();
        self.in_flight = Some(tokio::spawn(
            async move { bulk_with_retries(&es, lines).await },
        ));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), EsError> {
        if let Some(request) = self.in_flight.take() {
            let outcome = request.await.expect("bulk requests do not panic")?;
            self.outcome.add(outcome);
        }
        Ok(())
    }

    /// Sends what is queued and waits for every request.
    pub async fn finish(&mut self) -> Result<BulkOutcome, EsError> {
        self.send_batch().await?;
        self.wait().await?;
        Ok(self.outcome.clone())
    }

    /// The ids written (when tracked).
    pub fn ids(&self) -> Option<&HashSet<String>> {
        self.ids.as_ref()
    }
}

/// One `_bulk`, retried whole while Elasticsearch is away or pushing back (429, 5xx):
/// every action carries an external version, so resending is harmless.
async fn bulk_with_retries(es: &Es, lines: Vec<Value>) -> Result<BulkOutcome, EsError> {
    let attempt = || async {
        let items = es.bulk(lines.clone(), false).await?;
        let mut outcome = BulkOutcome::default();
        for item in &items {
            let result = item.as_object().and_then(|o| o.values().next());
            let status = result.and_then(|r| r["status"].as_u64()).unwrap_or(0);
            if (200..300).contains(&status) || status == 409 {
                outcome.written += 1;
            } else if status == 429 || status >= 500 {
                return Err(EsError::Status {
                    what: "bulk item".to_owned(),
                    status: status as u16,
                    body: result.map(Value::to_string).unwrap_or_default(),
                });
            } else {
                outcome.refused += 1;
                if outcome.first_refusal.is_none() {
                    outcome.first_refusal = result.map(|r| r["error"].to_string());
                }
            }
        }
        Ok(outcome)
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(8),
        )
        .when(|error| match error {
            EsError::Transport(_) => true,
            EsError::Status { status, .. } => *status == 429 || *status >= 500,
            EsError::Url(_) => false,
        })
        .await
}

/// Removes the `ids` from `index` (a tenant's stray documents after an in-place rebuild).
pub async fn delete_documents(es: &Es, index: &str, ids: &[String]) -> Result<u64, EsError> {
    let mut deleted = 0;
    for chunk in ids.chunks(1000) {
        let lines = chunk
            .iter()
            .map(|id| json!({ "delete": { "_index": index, "_id": id } }))
            .collect();
        let items = es.bulk(lines, false).await?;
        deleted += items
            .iter()
            .filter(|item| item["delete"]["status"].as_u64() == Some(200))
            .count() as u64;
    }
    Ok(deleted)
}

/// The columns of `customer_views`, in the order both writers below use.
const COLUMNS: &str = "tenant_id, customer_id, version, global_position, name, email, phone, \
                       address, tags, archived, created_at, updated_at";

/// Loads `views` into a table being built, with `COPY` (CSV) in chunks.
pub async fn copy_views(
    conn: &mut PgConnection,
    table: &str,
    views: &[&CustomerView],
) -> Result<u64, sqlx::Error> {
    assert!(
        is_plain_identifier(table),
        "table names are Chronicle's own"
    );
    let mut written = 0;
    for chunk in views.chunks(20_000) {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {table} ({COLUMNS}) FROM STDIN WITH (FORMAT csv)"
            ))
            .await?;
        let mut buffer = String::with_capacity(chunk.len() * 256);
        for view in chunk {
            csv_row(&mut buffer, view);
        }
        copy.send(buffer.into_bytes()).await?;
        written += copy.finish().await?;
    }
    Ok(written)
}

/// One CSV line of a view. Text is always quoted (so an empty string is not NULL); NULL is
/// an empty unquoted field; `tags` is an array literal, `address` JSON text.
pub fn csv_row(out: &mut String, view: &CustomerView) {
    fn quoted(out: &mut String, text: &str) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    }
    let tags = {
        let elements: Vec<String> = view
            .tags
            .iter()
            .map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{{{}}}", elements.join(","))
    };
    quoted(out, &view.tenant_id);
    out.push(',');
    out.push_str(&view.customer_id.to_string());
    out.push(',');
    out.push_str(&view.version.to_string());
    out.push(',');
    out.push_str(&view.global_position.to_string());
    out.push(',');
    quoted(out, &view.name);
    out.push(',');
    quoted(out, &view.email);
    out.push(',');
    if let Some(phone) = &view.phone {
        quoted(out, phone);
    }
    out.push(',');
    if let Some(address) = &view.address {
        quoted(out, &json!(address).to_string());
    }
    out.push(',');
    quoted(out, &tags);
    out.push(',');
    out.push(if view.archived { 't' } else { 'f' });
    out.push(',');
    out.push_str(&view.created_at.to_rfc3339());
    out.push(',');
    out.push_str(&view.updated_at.to_rfc3339());
    out.push('\n');
}

/// Replaces one tenant's rows of `table` with `views`, in the caller's transaction (which
/// has set the tenant, so row-level security confines the delete to it).
pub async fn replace_tenant_views(
    conn: &mut PgConnection,
    table: &str,
    views: &[&CustomerView],
) -> Result<u64, sqlx::Error> {
    assert!(
        is_plain_identifier(table),
        "table names are Chronicle's own"
    );
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
        .execute(&mut *conn)
        .await?;
    let mut written = 0;
    for chunk in views.chunks(2_000) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|view| {
                json!({
                    "tenant_id": view.tenant_id, "customer_id": view.customer_id,
                    "version": view.version, "global_position": view.global_position,
                    "name": view.name, "email": view.email, "phone": view.phone,
                    "address": view.address, "tags": view.tags, "archived": view.archived,
                    "created_at": view.created_at, "updated_at": view.updated_at,
                })
            })
            .collect();
        let statement = format!(
            "INSERT INTO {table} ({COLUMNS})
             SELECT {COLUMNS} FROM jsonb_to_recordset($1::jsonb) AS r(
                 tenant_id text, customer_id uuid, version bigint, global_position bigint,
                 name text, email text, phone text, address jsonb, tags text[],
                 archived boolean, created_at timestamptz, updated_at timestamptz)"
        );
        written += sqlx::query(AssertSqlSafe(statement))
            .bind(Value::Array(rows))
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(written)
}
