//! Where a rebuild's documents go in Elasticsearch: bulk writes with one request in flight
//! while the next fills.

use std::collections::HashSet;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::Value;
use tokio::task::JoinHandle;

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
