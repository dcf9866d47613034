//! Elasticsearch generations: `<prefix>-<kind>_<generation>` behind the alias
//! `<prefix>-<kind>`. A build index starts with refresh off and no replicas (bulk speed),
//! gets the template's settings back before its swap, and the swap is one `_aliases` call
//! that moves the alias and every tenant's filtered alias together.

use serde_json::{Value, json};

use super::generation::{GenerationMeta, Retired, beyond_keep};
use read_model::indices::{IndexKind, indices_behind};
use read_model::{Es, EsError};

/// Creates the index a rebuild writes into.
pub async fn create_build_index(
    es: &Es,
    kind: IndexKind,
    prefix: &str,
    generation: &str,
) -> Result<String, EsError> {
    let index = kind.index(prefix, generation);
    let meta = GenerationMeta {
        generation: generation.to_owned(),
        retired: None,
    };
    es.put(
        &format!("/{index}"),
        json!({
            "settings": { "index": { "refresh_interval": "-1", "number_of_replicas": 0 } },
            "mappings": { "_meta": { "chronicle": meta } },
        }),
    )
    .await?;
    Ok(index)
}

/// Gives a built index its serving settings back (the template's) and refreshes it.
pub async fn finish_build_index(es: &Es, kind: IndexKind, index: &str) -> Result<(), EsError> {
    let replicas = kind.template_settings()["number_of_replicas"].clone();
    es.put(
        &format!("/{index}/_settings"),
        json!({ "index": {
            // null: back to the template's (here the default, 1 s).
            "refresh_interval": kind.template_settings().get("refresh_interval").cloned().unwrap_or(Value::Null),
            "number_of_replicas": if replicas.is_null() { json!(1) } else { replicas },
        }}),
    )
    .await?;
    es.refresh(index).await
}

/// Puts `new_index` behind the alias and every tenant alias in one atomic `_aliases` call;
/// the indices it replaces are marked retired at `retired`. Returns them.
pub async fn swap(
    es: &Es,
    kind: IndexKind,
    prefix: &str,
    new_index: &str,
    retired: Retired,
) -> Result<Vec<String>, EsError> {
    let alias = kind.alias(prefix);
    let old = indices_behind(es, &alias).await?;
    let mut actions = vec![json!({ "add": {
        "index": new_index, "alias": alias, "is_write_index": true
    }})];
    for index in old.iter().filter(|index| *index != new_index) {
        let (_, aliases) = es.get(&format!("/{index}/_alias"), &[]).await?;
        if let Some(aliases) = aliases[index.as_str()]["aliases"].as_object() {
            for (name, definition) in aliases {
                if *name != alias {
                    let mut add = json!({ "index": new_index, "alias": name });
                    if let Some(filter) = definition.get("filter") {
                        add["filter"] = filter.clone();
                    }
                    actions.push(json!({ "add": add }));
                }
                actions.push(json!({ "remove": { "index": index, "alias": name } }));
            }
        }
    }
    es.post("/_aliases", json!({ "actions": actions })).await?;
    let retired_indices: Vec<String> = old.into_iter().filter(|i| i != new_index).collect();
    for index in &retired_indices {
        let mut meta = meta_of(es, index).await?;
        meta.retired = Some(retired);
        set_meta(es, index, &meta).await?;
    }
    let mut current = meta_of(es, new_index).await?;
    if current.retired.take().is_some() {
        set_meta(es, new_index, &current).await?;
    }
    Ok(retired_indices)
}

/// Every index of this kind with its generation record (the first index, created before
/// generations were recorded, counts as `v1`, never retired).
pub async fn generations(
    es: &Es,
    kind: IndexKind,
    prefix: &str,
) -> Result<Vec<(String, GenerationMeta)>, EsError> {
    let pattern = kind.index(prefix, "*");
    let (_, mappings) = es
        .get(
            &format!("/{pattern}/_mapping?allow_no_indices=true"),
            &[404],
        )
        .await?;
    let mut found: Vec<(String, GenerationMeta)> = mappings
        .as_object()
        .map(|indices| {
            indices
                .iter()
                .map(|(index, body)| {
                    let meta =
                        serde_json::from_value(body["mappings"]["_meta"]["chronicle"].clone())
                            .unwrap_or_else(|_| GenerationMeta {
                                generation: index
                                    .rsplit_once('_')
                                    .map_or("v1", |(_, g)| g)
                                    .to_owned(),
                                retired: None,
                            });
                    (index.clone(), meta)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// The most recently retired index: where a rollback goes.
pub async fn rollback_target(
    es: &Es,
    kind: IndexKind,
    prefix: &str,
) -> Result<Option<(String, Retired)>, EsError> {
    let live = indices_behind(es, &kind.alias(prefix)).await?;
    Ok(generations(es, kind, prefix)
        .await?
        .into_iter()
        .filter(|(index, _)| !live.contains(index))
        .filter_map(|(index, meta)| meta.retired.map(|retired| (index, retired)))
        .max_by_key(|(_, retired)| retired.at_ms))
}

/// Deletes retired indices beyond the `keep` most recent (and failed builds). Returns them.
pub async fn prune(
    es: &Es,
    kind: IndexKind,
    prefix: &str,
    keep: usize,
) -> Result<Vec<String>, EsError> {
    let live = indices_behind(es, &kind.alias(prefix)).await?;
    let retired = generations(es, kind, prefix)
        .await?
        .into_iter()
        .filter(|(index, _)| !live.contains(index))
        .map(|(index, meta)| (index, meta.retired.map(|r| r.at_ms)))
        .collect();
    let doomed = beyond_keep(retired, keep);
    for index in &doomed {
        delete_index(es, index).await?;
    }
    Ok(doomed)
}

pub async fn delete_index(es: &Es, index: &str) -> Result<(), EsError> {
    es.request(
        elasticsearch::http::Method::Delete,
        &format!("/{index}"),
        None,
        &[404],
    )
    .await
    .map(|_| ())
}

async fn meta_of(es: &Es, index: &str) -> Result<GenerationMeta, EsError> {
    let (_, mapping) = es.get(&format!("/{index}/_mapping"), &[]).await?;
    Ok(
        serde_json::from_value(mapping[index]["mappings"]["_meta"]["chronicle"].clone())
            .unwrap_or_else(|_| GenerationMeta {
                generation: index.rsplit_once('_').map_or("v1", |(_, g)| g).to_owned(),
                retired: None,
            }),
    )
}

async fn set_meta(es: &Es, index: &str, meta: &GenerationMeta) -> Result<(), EsError> {
    es.put(
        &format!("/{index}/_mapping"),
        json!({ "_meta": { "chronicle": meta } }),
    )
    .await
    .map(|_| ())
}
