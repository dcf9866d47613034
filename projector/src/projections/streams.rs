//! What the projections share: the customer streams a batch touches, read whole from the
//! store; versioned bulk writes to Elasticsearch; a tenant's documents for verification;
//! one subject's documents, deleted or redacted.

use std::collections::BTreeMap;

use event_store::{TenantId, TenantTransaction};
use schemas::{CustomerEvent, DecodeError, DomainEvent, EventEnvelope, StreamId};
use serde_json::{Value, json};

use super::{DynProjection, Held, ProjectionError, Rejected, Sinks};
use read_model::{Es, EsError};

/// The customer streams a batch touches, per tenant, with the batch indices of their
/// records (for rejecting them) and the lowest version seen.
#[derive(Debug, Default)]
pub struct TouchedStreams {
    pub by_tenant: BTreeMap<TenantId, BTreeMap<StreamId, Touched>>,
}

#[derive(Debug, Default)]
pub struct Touched {
    pub records: Vec<usize>,
    pub lowest_version: u64,
}

impl TouchedStreams {
    pub fn of(batch: &[EventEnvelope]) -> Self {
        let mut touched = Self::default();
        for (index, envelope) in batch.iter().enumerate() {
            if envelope.stream_id.category() != CustomerEvent::AGGREGATE {
                continue;
            }
            let entry = touched
                .by_tenant
                .entry(envelope.tenant_id.clone())
                .or_default()
                .entry(envelope.stream_id.clone())
                .or_insert(Touched {
                    records: Vec::new(),
                    lowest_version: u64::MAX,
                });
            entry.records.push(index);
            entry.lowest_version = entry.lowest_version.min(envelope.stream_version);
        }
        touched
    }
}

impl Touched {
    /// Every record that touched `stream`, rejected: the stream does not decode.
    pub fn rejected(&self, stream: &StreamId, error: &DecodeError) -> Rejected {
        let reason = format!("stream {stream} cannot be decoded: {error}");
        self.records
            .iter()
            .map(|record| (*record, reason.clone()))
            .collect()
    }
}

/// The shape the Elasticsearch customer projections share: each stream the batch touches is
/// read whole (one transaction per tenant) and turned into bulk `(action, document)` pairs
/// by `entries_of`; a stream that does not decode rejects the records that touched it.
/// Then one versioned bulk write.
pub async fn index_touched_streams(
    sinks: &Sinks,
    batch: &[EventEnvelope],
    refresh: bool,
    mut entries_of: impl FnMut(
        &TenantId,
        &StreamId,
        &Touched,
        &[EventEnvelope],
    ) -> Result<Vec<(Value, Value)>, DecodeError>,
) -> Result<Rejected, ProjectionError> {
    let mut rejected = Vec::new();
    let mut entries = Vec::new();
    for (tenant, streams) in TouchedStreams::of(batch).by_tenant {
        let mut tx = sinks.store.begin(&tenant).await?;
        let mut envelopes = read_streams(&mut tx, &streams).await?;
        tx.commit().await?;
        for (stream, touched) in &streams {
            let events = envelopes.remove(stream).unwrap_or_default();
            match entries_of(&tenant, stream, touched, &events) {
                Ok(pairs) => entries.extend(
                    pairs
                        .into_iter()
                        .map(|(action, document)| (touched.records.clone(), action, document)),
                ),
                Err(error) => rejected.extend(touched.rejected(stream, &error)),
            }
        }
    }
    rejected.extend(index_with_versions(&sinks.es, entries, refresh).await?);
    Ok(rejected)
}

/// Reads the touched streams of one tenant from the event store, whole, grouped by stream.
pub async fn read_streams(
    tx: &mut TenantTransaction<'_>,
    streams: &BTreeMap<StreamId, Touched>,
) -> Result<BTreeMap<StreamId, Vec<EventEnvelope>>, ProjectionError> {
    let ids: Vec<StreamId> = streams.keys().cloned().collect();
    let mut grouped: BTreeMap<StreamId, Vec<EventEnvelope>> = BTreeMap::new();
    for envelope in tx.read_streams(&ids).await? {
        grouped
            .entry(envelope.stream_id.clone())
            .or_default()
            .push(envelope);
    }
    Ok(grouped)
}

/// Bulk-indexes `(records, action, document)` entries with external versions. A version
/// conflict means Elasticsearch already has this or a newer version: done. Any other
/// item error rejects the records the document was built from. `refresh`: searchable at
/// once rather than at the index's next refresh.
pub async fn index_with_versions(
    es: &Es,
    entries: Vec<(Vec<usize>, Value, Value)>,
    refresh: bool,
) -> Result<Rejected, ProjectionError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines = Vec::with_capacity(entries.len() * 2);
    let mut owners = Vec::with_capacity(entries.len());
    for (records, action, document) in entries {
        lines.push(action);
        lines.push(document);
        owners.push(records);
    }
    let items = es.bulk(lines, refresh).await?;
    let mut rejected = Vec::new();
    for (item, records) in items.iter().zip(owners) {
        let result = &item["index"];
        let status = result["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) || status == 409 {
            continue;
        }
        if status == 429 || status >= 500 {
            return Err(EsError::Status {
                what: "bulk item".to_owned(),
                status: status as u16,
                body: result.to_string(),
            }
            .into());
        }
        let reason = format!("elasticsearch refused the document: {}", result["error"]);
        rejected.extend(records.into_iter().map(|record| (record, reason.clone())));
    }
    Ok(rejected)
}

/// (stream, version, position) of every document of `tenant` in the projection's index,
/// read in the order of `sort` (unique per document).
pub async fn held_documents(
    sinks: &Sinks,
    projection: &dyn DynProjection,
    tenant: &TenantId,
    version_field: &str,
    sort: &[&str],
) -> Result<Vec<Held>, ProjectionError> {
    let hits = sinks
        .es
        .search_all(
            sinks.targets.of(projection),
            json!({
                "query": { "term": { "tenant_id": tenant.as_str() } },
                "_source": ["stream_id", version_field, "global_position"],
                "sort": sort.iter().map(|field| json!({ *field: "asc" })).collect::<Vec<_>>(),
            }),
        )
        .await?;
    Ok(hits
        .iter()
        .map(|hit| {
            let source = &hit["_source"];
            (
                source["stream_id"].as_str().unwrap_or_default().to_owned(),
                source[version_field].as_u64().unwrap_or(0),
                source["global_position"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// Where a document is: its (physical) index and its id.
pub type Located = (String, String);

/// Every document of `tenant` in `target` that also matches `filter` (a query clause), as
/// (index, id), in position order.
pub async fn tenant_documents(
    es: &Es,
    target: &str,
    tenant: &TenantId,
    filter: Value,
) -> Result<Vec<Located>, EsError> {
    let hits = es
        .search_all(
            target,
            json!({
                "_source": false,
                "query": { "bool": { "filter": [
                    { "term": { "tenant_id": tenant.as_str() } },
                    filter,
                ]}},
                // Unique per document in every index (one document per event or customer).
                "sort": [{ "global_position": "asc" }],
            }),
        )
        .await?;
    Ok(hits
        .iter()
        .filter_map(|hit| {
            Some((
                hit["_index"].as_str()?.to_owned(),
                hit["_id"].as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// Every document of `subject` (a stream) of `tenant` in `target`.
pub async fn subject_documents(
    es: &Es,
    target: &str,
    tenant: &TenantId,
    subject: &StreamId,
) -> Result<Vec<Located>, EsError> {
    let filter = json!({ "term": { "stream_id": subject.as_str() } });
    tenant_documents(es, target, tenant, filter).await
}

/// Removes the documents. Returns how many were there.
pub async fn delete_documents(es: &Es, documents: &[Located]) -> Result<u64, EsError> {
    per_document(es, documents, "delete", |_| None).await
}

/// Empties the `payload` of each document, keeping the rest (who, what, when). A partial
/// update bumps the document's version past the event's position, so a late redelivery of
/// the event is refused as old and cannot bring the payload back.
pub async fn redact_payloads(es: &Es, documents: &[Located]) -> Result<u64, EsError> {
    per_document(es, documents, "update", |_| {
        Some(json!({ "doc": { "payload": null } }))
    })
    .await
}

/// One `operation` per document, in bulks of 1000, refreshed so readers see the result at
/// once; `body` gives the line that follows the action, if the operation takes one.
/// Returns how many documents it applied to.
async fn per_document(
    es: &Es,
    documents: &[Located],
    operation: &str,
    body: impl Fn(&Located) -> Option<Value>,
) -> Result<u64, EsError> {
    let mut applied = 0;
    for chunk in documents.chunks(1000) {
        let mut lines = Vec::with_capacity(chunk.len() * 2);
        for document in chunk {
            let (index, id) = document;
            lines.push(json!({ operation: { "_index": index, "_id": id } }));
            lines.extend(body(document));
        }
        let items = es.bulk(lines, true).await?;
        applied += items
            .iter()
            .filter(|item| item[operation]["status"].as_u64() == Some(200))
            .count() as u64;
    }
    Ok(applied)
}
