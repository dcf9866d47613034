//! The Elasticsearch layout: index templates from `infra/elasticsearch/`, physical indices
//! named `<prefix>-<kind>_<generation>`, reached only through the alias `<prefix>-<kind>`
//! (so a rebuild can swap the index behind it) and, for Kibana, per-tenant filtered aliases
//! `<prefix>-<kind>-<tenant>`. Physical names contain `_`, which no tenant id can, so an
//! index name never collides with a tenant's alias.

use serde_json::{Value, json};

use crate::es::{Es, EsError};

/// One kind of index: its name (in the alias `<prefix>-<name>` and in physical indices
/// `<prefix>-<name>_<generation>`) and its template, checked in under `infra/elasticsearch/`.
/// Each is declared by the read module of its concept ([`crate::search::INDEX`],
/// [`crate::history::INDEX`], [`crate::audit::INDEX`]); the projector's registry says which
/// ones it maintains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKind {
    name: &'static str,
    template: &'static str,
}

impl IndexKind {
    /// `name`: lower-case letters only (it is part of every alias and index name, and a
    /// tenant alias `<prefix>-<name>-<tenant>` must stay unambiguous).
    pub const fn new(name: &'static str, template: &'static str) -> Self {
        Self { name, template }
    }

    pub fn name(self) -> &'static str {
        self.name
    }

    /// The template body, with settings and mappings.
    fn template(self) -> Value {
        serde_json::from_str(self.template).expect("checked-in templates are JSON")
    }

    /// The index settings of the template (shards, replicas, refresh interval).
    pub fn template_settings(self) -> Value {
        self.template()["template"]["settings"].clone()
    }

    /// The alias readers use, e.g. `chronicle-customers`.
    pub fn alias(self, prefix: &str) -> String {
        format!("{prefix}-{}", self.name())
    }

    /// A tenant's filtered alias for Kibana, e.g. `chronicle-customers-acme`.
    pub fn tenant_alias(self, prefix: &str, tenant: &str) -> String {
        format!("{prefix}-{}-{tenant}", self.name())
    }

    /// A physical index of this kind.
    pub fn index(self, prefix: &str, generation: &str) -> String {
        format!("{prefix}-{}_{generation}", self.name())
    }
}

/// Installs the templates of `kinds` and, where an alias does not exist yet, creates its
/// first index behind it. Idempotent; safe to run from several processes.
pub async fn ensure_layout(es: &Es, prefix: &str, kinds: &[IndexKind]) -> Result<(), EsError> {
    for &kind in kinds {
        let mut template = kind.template();
        template["index_patterns"] = json!([format!("{prefix}-{}_*", kind.name())]);
        let mappings = template["template"]["mappings"].clone();
        es.put(
            &format!("/_index_template/{}", kind.alias(prefix)),
            template,
        )
        .await?;

        let (status, _) = es
            .get(&format!("/_alias/{}", kind.alias(prefix)), &[404])
            .await?;
        if status == 200 {
            // Indices made from an older template get its updatable mapping parameters
            // (`ignore_above`), so a long value is not refused by an index built before.
            es.put(&format!("/{}/_mapping", kind.alias(prefix)), mappings)
                .await?;
        }
        if status == 404 {
            let index = kind.index(prefix, "v1");
            let body = json!({ "aliases": { kind.alias(prefix): { "is_write_index": true } } });
            // A concurrent creator may win; the alias then exists either way.
            let (created, answer) = es
                .request(
                    elasticsearch::http::Method::Put,
                    &format!("/{index}"),
                    Some(body),
                    &[400],
                )
                .await?;
            if created == 400 && answer["error"]["type"] != "resource_already_exists_exception" {
                return Err(EsError::Status {
                    what: format!("PUT /{index}"),
                    status: 400,
                    body: answer.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Deletes every index and template under `prefix` (test and benchmark clean-up; explicit
/// names, since Elasticsearch refuses wildcard deletes by default). Best effort.
pub async fn remove_layout(es: &Es, prefix: &str) {
    if let Ok((_, indices)) = es
        .get(&format!("/_cat/indices/{prefix}-*?format=json"), &[404])
        .await
    {
        let names: Vec<&str> = indices
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["index"].as_str())
            .collect();
        if !names.is_empty() {
            let _ = es
                .request(
                    elasticsearch::http::Method::Delete,
                    &format!("/{}", names.join(",")),
                    None,
                    &[404],
                )
                .await;
        }
    }
    for template in installed_templates(es, prefix).await.unwrap_or_default() {
        let _ = es
            .request(
                elasticsearch::http::Method::Delete,
                &format!("/_index_template/{template}"),
                None,
                &[404],
            )
            .await;
    }
}

/// The names of the index templates installed under `prefix` (`<prefix>-<kind>`): one per
/// kind of index a projector maintains there. What is installed is the truth for processes
/// that do not run the projections (the API creating a new tenant's aliases).
async fn installed_templates(es: &Es, prefix: &str) -> Result<Vec<String>, EsError> {
    let (status, answer) = es
        .get(&format!("/_index_template/{prefix}-*"), &[404])
        .await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    Ok(answer["index_templates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|template| template["name"].as_str())
        // `<prefix>-<kind>`, where a kind is lower-case letters: not another prefix's.
        .filter(|name| {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|kind| {
                    !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase())
                })
        })
        .map(str::to_owned)
        .collect())
}

/// The physical indices behind `alias`.
pub async fn indices_behind(es: &Es, alias: &str) -> Result<Vec<String>, EsError> {
    let (status, body) = es.get(&format!("/_alias/{alias}"), &[404]).await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    Ok(body
        .as_object()
        .map(|indices| indices.keys().cloned().collect())
        .unwrap_or_default())
}

/// Creates (or re-points) the tenant's filtered aliases on the current index of each kind
/// installed under `prefix`, and takes them off any other index (one a replay swapped out
/// while the alias was being created), so a tenant's alias never spans two generations.
pub async fn ensure_tenant_aliases(es: &Es, prefix: &str, tenant: &str) -> Result<(), EsError> {
    let mut actions = Vec::new();
    for alias in installed_templates(es, prefix).await? {
        let current = indices_behind(es, &alias).await?;
        let tenant_alias = format!("{alias}-{tenant}");
        for index in indices_behind(es, &tenant_alias).await? {
            if !current.contains(&index) {
                actions.push(json!({ "remove": { "index": index, "alias": tenant_alias } }));
            }
        }
        for index in current {
            actions.push(json!({ "add": {
                "index": index,
                "alias": tenant_alias,
                "filter": { "term": { "tenant_id": tenant } }
            }}));
        }
    }
    if !actions.is_empty() {
        es.post("/_aliases", json!({ "actions": actions })).await?;
    }
    Ok(())
}
