//! The Kibana saved objects (`infra/kibana/saved_objects.ndjson`) against the real index mappings.
//!
//! Kibana names fields by string and checks none of them on import: a field renamed in an index
//! template, or mistyped in a saved object, only shows up as an empty or broken panel. Kibana
//! cannot run everywhere the tests run (it is Docker Compose only), so this test does what Kibana
//! would find out: it installs the index templates of `infra/elasticsearch` under a prefix of its
//! own, creates one index per template, asks Elasticsearch for the field capabilities and checks
//! every field the saved objects use (data view time fields and source filters, saved search
//! columns, sort and query, Lens columns, column filters, queries and filters, legacy
//! visualization aggregations) for existence and a type that fits its use. It also checks the
//! wiring Kibana resolves by reference (panels to visualizations, layers and searches to data
//! views), and reports every problem at once.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// The index templates, by the suffix of the alias (and data view title) each one serves.
const KINDS: [&str; 3] = ["customers", "audit", "history"];
/// Data views are titled after the production aliases, `chronicle-<kind>` (api-contract.md).
const PRODUCTION_PREFIX: &str = "chronicle";
/// Lens' pseudo field behind "count of records": not a mapped field.
const LENS_RECORDS: &str = "___records___";
/// The saved objects use 14 field references today. Far fewer found means the walk below missed
/// a part of them (a renamed key, a new layout), not that they are fine.
const MIN_FIELD_REFERENCES: usize = 12;
/// Saved object types whose objects must each name at least one field: a data view without a
/// time field or a visualization without a field would mean the walk skipped it.
const FIELD_BEARING_TYPES: [&str; 4] = ["index-pattern", "search", "lens", "visualization"];

const NUMERIC_TYPES: [&str; 9] = [
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
];

#[tokio::test]
async fn kibana_saved_objects_use_only_mapped_fields_of_the_right_type() {
    let base = std::env::var("ELASTICSEARCH_URL").unwrap_or_else(|_| {
        panic!("ELASTICSEARCH_URL is not set: run the tests through ./dev test")
    });
    let base = base.trim_end_matches('/').to_owned();
    let saved_objects_path = repo_path("infra/kibana/saved_objects.ndjson");
    let saved_objects = read(&saved_objects_path);

    let prefix = format!("kibanatest{}", uuid::Uuid::now_v7().simple());
    let index_of = |kind: &str| format!("{prefix}-{kind}_v1");
    let template_of = |kind: &str| format!("{prefix}-{kind}");
    // Armed before anything is created, so a failure half-way still removes what exists.
    let _cleanup = Cleanup {
        base: base.clone(),
        indices: KINDS.iter().map(|kind| index_of(kind)).collect(),
        templates: KINDS.iter().map(|kind| template_of(kind)).collect(),
    };

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut caps = HashMap::new();
    for kind in KINDS {
        // The projector's way: the file's body under `<prefix>-<kind>`, for `<prefix>-<kind>_*`.
        let mut template: Value = serde_json::from_str(&read(&repo_path(&format!(
            "infra/elasticsearch/{kind}.json"
        ))))
        .unwrap_or_else(|e| panic!("infra/elasticsearch/{kind}.json: {e}"));
        template["index_patterns"] = json!([format!("{prefix}-{kind}_*")]);
        let template_url = format!("{base}/_index_template/{}", template_of(kind));
        es(
            &client,
            reqwest::Method::PUT,
            &template_url,
            Some(&template),
        )
        .await;
        let index_url = format!("{base}/{}", index_of(kind));
        es(&client, reqwest::Method::PUT, &index_url, None).await;
        let field_caps_url = format!("{base}/{}/_field_caps?fields=*", index_of(kind));
        let field_caps = es(&client, reqwest::Method::GET, &field_caps_url, None).await;
        let fields = parse_field_caps(&field_caps);
        // Every document carries tenant_id (keyword): if it is missing, the template did not
        // apply to the index and every check below would fail for the wrong reason.
        let tenant_id = fields.get("tenant_id").map(|cap| cap.types.clone());
        assert_eq!(
            tenant_id,
            Some(vec!["keyword".to_owned()]),
            "index {} did not get its template's mapping",
            index_of(kind)
        );
        caps.insert(kind.to_owned(), fields);
    }

    let walk = Walk::of(&saved_objects);
    let mut problems = walk.problems.clone();
    for field_use in &walk.uses {
        if let Some(problem) = field_use.check(&caps) {
            problems.push(problem);
        }
    }
    for object in walk
        .objects
        .iter()
        .filter(|o| FIELD_BEARING_TYPES.contains(&o.type_.as_str()))
    {
        if !walk.uses.iter().any(|u| u.object == object.label()) {
            problems.push(format!(
                "{}: no field reference found in it (the check does not understand its layout)",
                object.label()
            ));
        }
    }
    if walk.uses.len() < MIN_FIELD_REFERENCES {
        problems.push(format!(
            "only {} field references found, expected at least {MIN_FIELD_REFERENCES}: the check \
             is missing part of the saved objects",
            walk.uses.len()
        ));
    }

    eprintln!(
        "checked {} field references of {} saved objects against {}",
        walk.uses.len(),
        walk.objects.len(),
        KINDS.map(index_of).join(", ")
    );
    for field_use in &walk.uses {
        eprintln!(
            "  {} {}.{} ({})",
            field_use.object,
            field_use.kind,
            field_use.field,
            field_use.need.describe()
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {}:\n  - {}",
        problems.len(),
        saved_objects_path.display(),
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch
// ---------------------------------------------------------------------------------------------

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One request that must succeed; the response body as JSON.
async fn es(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Value {
    let mut request = client.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap_or_else(|e| {
        panic!("{method} {url}: {e} (is Elasticsearch up? ./dev test starts it)")
    });
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{method} {url}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
}

/// What `_field_caps` says of one field of one index.
#[derive(Debug)]
struct FieldCap {
    types: Vec<String>,
    searchable: bool,
    aggregatable: bool,
}

fn parse_field_caps(response: &Value) -> HashMap<String, FieldCap> {
    let fields = response["fields"]
        .as_object()
        .expect("_field_caps answer without fields");
    fields
        .iter()
        .map(|(name, by_type)| {
            let by_type = by_type.as_object().expect("field caps by type");
            let cap = FieldCap {
                types: by_type.keys().cloned().collect(),
                searchable: by_type.values().all(|c| c["searchable"] == true),
                aggregatable: by_type.values().all(|c| c["aggregatable"] == true),
            };
            (name.clone(), cap)
        })
        .collect()
}

/// Removes the test's indices and templates when the test ends, passed or failed.
#[derive(Debug)]
struct Cleanup {
    base: String,
    indices: Vec<String>,
    templates: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let base = self.base.clone();
        let indices = self.indices.join(",");
        let templates = self.templates.clone();
        // Drop cannot await, and it may run while the test's runtime unwinds: the requests go
        // out from a thread with a runtime of its own.
        let failures = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => return vec![format!("cleanup runtime: {e}")],
            };
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                let mut failures = Vec::new();
                // Named one by one: wildcard deletes are refused (action.destructive_requires_name).
                let mut urls = vec![format!("{base}/{indices}?ignore_unavailable=true")];
                urls.extend(
                    templates
                        .iter()
                        .map(|t| format!("{base}/_index_template/{t}")),
                );
                for url in urls {
                    match client.delete(&url).send().await {
                        // A template that was never created is fine.
                        Ok(r)
                            if r.status().is_success()
                                || r.status() == reqwest::StatusCode::NOT_FOUND => {}
                        Ok(r) => failures.push(format!("DELETE {url}: {}", r.status())),
                        Err(e) => failures.push(format!("DELETE {url}: {e}")),
                    }
                }
                failures
            })
        })
        .join()
        .unwrap_or_else(|_| vec!["cleanup thread panicked".to_owned()]);
        for failure in failures {
            eprintln!("kibana_saved_objects cleanup: {failure}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Saved objects
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reference {
    name: String,
    type_: String,
    id: String,
}

#[derive(Debug)]
struct SavedObject {
    type_: String,
    id: String,
    attributes: Value,
    references: Vec<Reference>,
}

impl SavedObject {
    fn label(&self) -> String {
        format!("{} {}", self.type_, self.id)
    }

    fn reference(&self, name: &str) -> Option<&Reference> {
        self.references.iter().find(|r| r.name == name)
    }
}

/// What a use of a field requires of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// A concrete (non-object) field: Discover columns, source filters.
    Leaf,
    /// `date` or `date_nanos`: time fields, date histograms.
    Date,
    /// Doc values: terms, cardinality, sorting.
    Aggregatable,
    /// Indexed: queries and filters.
    Searchable,
    /// A number with doc values: sum, average, percentiles, ranges.
    Numeric,
}

impl Need {
    fn describe(self) -> &'static str {
        match self {
            Need::Leaf => "a mapped field",
            Need::Date => "a date field",
            Need::Aggregatable => "an aggregatable field (keyword, number, date, ...)",
            Need::Searchable => "a searchable field",
            Need::Numeric => "a numeric field",
        }
    }

    /// The Lens operation (`operationType`) or legacy aggregation (`aggs[].type`) on a field.
    fn of_operation(operation: &str) -> Need {
        match operation {
            "date_histogram" => Need::Date,
            "terms" | "significant_terms" | "multi_terms" | "unique_count" | "cardinality"
            | "min" | "max" | "last_value" | "top_hits" | "top_metrics" => Need::Aggregatable,
            "sum" | "average" | "avg" | "median" | "percentile" | "percentiles"
            | "percentile_rank" | "percentile_ranks" | "standard_deviation" | "std_dev"
            | "range" | "histogram" => Need::Numeric,
            _ => Need::Leaf,
        }
    }
}

/// One field named by one saved object, in the index of one template.
#[derive(Debug)]
struct FieldUse {
    object: String,
    place: String,
    kind: String,
    field: String,
    need: Need,
}

impl FieldUse {
    fn check(&self, caps: &HashMap<String, HashMap<String, FieldCap>>) -> Option<String> {
        let where_ = format!(
            "{}, {}: field \"{}\" of {PRODUCTION_PREFIX}-{}",
            self.object, self.place, self.field, self.kind
        );
        let Some(fields) = caps.get(&self.kind) else {
            return Some(format!("{where_}: no index template for \"{}\"", self.kind));
        };
        let Some(cap) = fields.get(&self.field) else {
            let mut known: Vec<&str> = fields
                .iter()
                .filter(|(name, cap)| !name.starts_with('_') && !is_object(cap))
                .map(|(name, _)| name.as_str())
                .collect();
            known.sort_unstable();
            return Some(format!(
                "{where_} is not mapped (mapped: {})",
                known.join(", ")
            ));
        };
        let fits = !is_object(cap)
            && match self.need {
                Need::Leaf => true,
                Need::Date => cap.types.iter().all(|t| t == "date" || t == "date_nanos"),
                Need::Aggregatable => cap.aggregatable,
                Need::Searchable => cap.searchable,
                Need::Numeric => {
                    cap.aggregatable
                        && cap
                            .types
                            .iter()
                            .all(|t| NUMERIC_TYPES.contains(&t.as_str()))
                }
            };
        (!fits).then(|| {
            format!(
                "{where_} is {} (searchable: {}, aggregatable: {}), but this use needs {}",
                cap.types.join("/"),
                cap.searchable,
                cap.aggregatable,
                self.need.describe()
            )
        })
    }
}

fn is_object(cap: &FieldCap) -> bool {
    cap.types.iter().any(|t| t == "object" || t == "nested")
}

/// Everything found in the saved objects: the objects, the field uses, and the problems that
/// need no mapping to see (malformed objects, broken references).
#[derive(Debug, Default)]
struct Walk {
    objects: Vec<SavedObject>,
    uses: Vec<FieldUse>,
    problems: Vec<String>,
    /// Data view id -> template kind, from the data view's title.
    data_views: HashMap<String, String>,
    /// Object id -> the template kinds it reads (for dashboards: the kinds of their panels).
    kinds_of: HashMap<String, BTreeSet<String>>,
}

impl Walk {
    fn of(ndjson: &str) -> Walk {
        let mut walk = Walk::default();
        for (number, line) in ndjson.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                // An export ends with a summary line; Kibana's import skips it too.
                Ok(value) if value.get("exportedCount").is_some() => {}
                Ok(value) => match parse_object(&value) {
                    Ok(object) => walk.objects.push(object),
                    Err(e) => walk.problems.push(format!("line {}: {e}", number + 1)),
                },
                Err(e) => walk
                    .problems
                    .push(format!("line {}: not JSON: {e}", number + 1)),
            }
        }
        walk.check_ids_and_references();
        let objects = std::mem::take(&mut walk.objects);
        // Data views first (everything else resolves to them), then what reads them, then the
        // dashboards that show those.
        for type_ in [
            "index-pattern",
            "search",
            "lens",
            "visualization",
            "dashboard",
        ] {
            for object in objects.iter().filter(|o| o.type_ == type_) {
                match type_ {
                    "index-pattern" => walk.data_view(object),
                    "search" => walk.search(object),
                    "lens" => walk.lens(object),
                    "visualization" => walk.visualization(object),
                    _ => walk.dashboard(object),
                }
            }
        }
        for object in &objects {
            if ![
                "index-pattern",
                "search",
                "lens",
                "visualization",
                "dashboard",
            ]
            .contains(&object.type_.as_str())
            {
                walk.problems
                    .push(format!("{}: type not checked by this test", object.label()));
            }
        }
        let titles: BTreeSet<String> = walk.data_views.values().cloned().collect();
        let expected: BTreeSet<String> = KINDS.iter().map(|k| (*k).to_owned()).collect();
        if titles != expected {
            walk.problems.push(format!(
                "data views cover {titles:?}, expected one per alias: {expected:?}"
            ));
        }
        walk.objects = objects;
        walk
    }

    fn check_ids_and_references(&mut self) {
        let mut seen = HashMap::new();
        for object in &self.objects {
            if seen
                .insert((object.type_.clone(), object.id.clone()), ())
                .is_some()
            {
                self.problems
                    .push(format!("{}: duplicate id", object.label()));
            }
        }
        for object in &self.objects {
            for reference in &object.references {
                if !seen.contains_key(&(reference.type_.clone(), reference.id.clone())) {
                    self.problems.push(format!(
                        "{}: reference \"{}\" points to {} {}, which is not in the file",
                        object.label(),
                        reference.name,
                        reference.type_,
                        reference.id
                    ));
                }
            }
        }
    }

    fn field(
        &mut self,
        object: &SavedObject,
        place: impl Into<String>,
        kind: &str,
        field: &str,
        need: Need,
    ) {
        self.uses.push(FieldUse {
            object: object.label(),
            place: place.into(),
            kind: kind.to_owned(),
            field: field.to_owned(),
            need,
        });
    }

    /// The template kind behind a named reference: a data view, or a saved search's data view.
    fn kind_of_reference(&mut self, object: &SavedObject, name: &str) -> Option<String> {
        let Some(reference) = object.reference(name) else {
            self.problems
                .push(format!("{}: no reference named \"{name}\"", object.label()));
            return None;
        };
        let kind = match reference.type_.as_str() {
            "index-pattern" => self.data_views.get(&reference.id).cloned(),
            "search" => self
                .kinds_of
                .get(&reference.id)
                .and_then(|kinds| kinds.iter().next().cloned()),
            _ => None,
        };
        if kind.is_none() {
            self.problems.push(format!(
                "{}: reference \"{name}\" ({} {}) does not lead to a Chronicle data view",
                object.label(),
                reference.type_,
                reference.id
            ));
        }
        kind
    }

    fn data_view(&mut self, object: &SavedObject) {
        let attributes = &object.attributes;
        let title = attributes["title"].as_str().unwrap_or_default();
        // `chronicle-<kind>`, or a tenant's filtered alias `chronicle-<kind>-<tenant>`.
        let kind = title
            .strip_prefix(PRODUCTION_PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| {
                KINDS.into_iter().find(|kind| {
                    rest.strip_prefix(kind).is_some_and(|tenant| {
                        tenant.is_empty() || tenant.len() > 1 && tenant.starts_with('-')
                    })
                })
            });
        let Some(kind) = kind else {
            self.problems.push(format!(
                "{}: title \"{title}\" is not an alias: {PRODUCTION_PREFIX}-{{{}}}[-<tenant>]",
                object.label(),
                KINDS.join(",")
            ));
            return;
        };
        self.data_views.insert(object.id.clone(), kind.to_owned());
        self.kinds_of
            .insert(object.id.clone(), BTreeSet::from([kind.to_owned()]));
        match attributes["timeFieldName"].as_str() {
            Some(time_field) => self.field(object, "timeFieldName", kind, time_field, Need::Date),
            None => self
                .problems
                .push(format!("{}: no timeFieldName", object.label())),
        }
        if let Some(filters) = self.json_attribute(object, "sourceFilters") {
            for value in filters
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["value"].as_str())
            {
                // Patterns (`meta.*`) match whatever exists.
                if !value.contains('*') {
                    self.field(object, "sourceFilters", kind, value, Need::Leaf);
                }
            }
        }
        for attribute in ["fieldFormatMap", "fieldAttrs"] {
            if let Some(map) = self.json_attribute(object, attribute) {
                for field in map.as_object().into_iter().flat_map(|m| m.keys()) {
                    self.field(object, attribute, kind, field, Need::Leaf);
                }
            }
        }
    }

    fn search(&mut self, object: &SavedObject) {
        let Some(source) = self.search_source(object) else {
            return;
        };
        let Some(kind) = self.search_source_kind(object, &source) else {
            return;
        };
        self.kinds_of
            .insert(object.id.clone(), BTreeSet::from([kind.clone()]));
        let attributes = &object.attributes;
        for column in attributes["columns"].as_array().into_iter().flatten() {
            match column.as_str() {
                Some("_source") => {}
                Some(field) => self.field(object, "columns", &kind, field, Need::Leaf),
                None => self.problems.push(format!(
                    "{}: column {column} is not a string",
                    object.label()
                )),
            }
        }
        for sort in attributes["sort"].as_array().into_iter().flatten() {
            match sort.get(0).and_then(Value::as_str) {
                Some("_score" | "_doc") => {}
                Some(field) => self.field(object, "sort", &kind, field, Need::Aggregatable),
                None => self.problems.push(format!(
                    "{}: sort entry {sort} is not [field, order]",
                    object.label()
                )),
            }
        }
        let kinds = [kind];
        self.query(object, "searchSourceJSON query", &source["query"], &kinds);
        self.filters(object, "searchSourceJSON filter", &source["filter"], &kinds);
    }

    fn lens(&mut self, object: &SavedObject) {
        let state = match &object.attributes["state"] {
            Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            state => state.clone(),
        };
        let datasources = &state["datasourceStates"];
        let layers = datasources["formBased"]["layers"]
            .as_object()
            .or_else(|| datasources["indexpattern"]["layers"].as_object());
        let Some(layers) = layers else {
            self.problems.push(format!(
                "{}: no formBased layers in state.datasourceStates",
                object.label()
            ));
            return;
        };
        if datasources["textBased"]["layers"]
            .as_object()
            .is_some_and(|l| !l.is_empty())
        {
            self.problems.push(format!(
                "{}: ES|QL (textBased) layers are not checked by this test",
                object.label()
            ));
        }
        let mut kinds = Vec::new();
        let mut columns_of = HashMap::new();
        for (layer_id, layer) in layers {
            let columns = layer["columns"].as_object().cloned().unwrap_or_default();
            for id in layer["columnOrder"].as_array().into_iter().flatten() {
                if !id.as_str().is_some_and(|id| columns.contains_key(id)) {
                    self.problems.push(format!(
                        "{}: layer {layer_id}: columnOrder names {id}, not a column",
                        object.label()
                    ));
                }
            }
            columns_of.insert(layer_id.clone(), columns.clone());
            let reference = format!("indexpattern-datasource-layer-{layer_id}");
            let Some(kind) = self.kind_of_reference(object, &reference) else {
                continue;
            };
            for (column_id, column) in &columns {
                let place = format!("layer {layer_id}, column {column_id}");
                let operation = column["operationType"].as_str().unwrap_or_default();
                match column["sourceField"].as_str() {
                    Some(LENS_RECORDS) if operation == "count" => {}
                    Some(field) => {
                        let place = format!("{place} ({operation})");
                        self.field(object, place, &kind, field, Need::of_operation(operation));
                    }
                    None => {}
                }
                let one_kind = [kind.clone()];
                self.query(
                    object,
                    &format!("{place} filter"),
                    &column["filter"],
                    &one_kind,
                );
                for filter in column["params"]["filters"].as_array().into_iter().flatten() {
                    self.query(
                        object,
                        &format!("{place} ({operation})"),
                        &filter["input"],
                        &one_kind,
                    );
                }
            }
            kinds.push(kind);
        }
        self.lens_accessors(object, &state["visualization"], &columns_of);
        self.query(object, "state.query", &state["query"], &kinds);
        self.filters(object, "state.filters", &state["filters"], &kinds);
        self.kinds_of
            .insert(object.id.clone(), kinds.into_iter().collect());
    }

    /// XY, pie, metric and table visualizations name the layer's columns they show: each must
    /// be a column of that layer, or the panel renders empty.
    fn lens_accessors(
        &mut self,
        object: &SavedObject,
        visualization: &Value,
        columns_of: &HashMap<String, serde_json::Map<String, Value>>,
    ) {
        let layers: Vec<&Value> = match visualization["layers"].as_array() {
            Some(layers) => layers.iter().collect(),
            None => vec![visualization],
        };
        for layer in layers {
            if layer["layerType"].as_str().is_some_and(|t| t != "data") {
                continue; // reference lines and annotations carry their own columns
            }
            let Some(layer_id) = layer["layerId"].as_str() else {
                continue;
            };
            let Some(columns) = columns_of.get(layer_id) else {
                self.problems.push(format!(
                    "{}: visualization shows layer {layer_id}, which has no datasource layer",
                    object.label()
                ));
                continue;
            };
            let mut accessors: Vec<&Value> =
                ["xAccessor", "splitAccessor", "accessor", "metricAccessor"]
                    .iter()
                    .map(|key| &layer[*key])
                    .collect();
            accessors.extend(layer["accessors"].as_array().into_iter().flatten());
            accessors.extend(layer["splitAccessors"].as_array().into_iter().flatten());
            for accessor in accessors.into_iter().filter_map(Value::as_str) {
                if !columns.contains_key(accessor) {
                    self.problems.push(format!(
                        "{}: visualization layer {layer_id} shows column {accessor}, which the layer does not have",
                        object.label()
                    ));
                }
            }
        }
    }

    fn visualization(&mut self, object: &SavedObject) {
        let Some(source) = self.search_source(object) else {
            return;
        };
        let kind = if object.attributes.get("savedSearchRefName").is_some() {
            let name = object.attributes["savedSearchRefName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.kind_of_reference(object, &name)
        } else {
            self.search_source_kind(object, &source)
        };
        let Some(kind) = kind else { return };
        let kinds = [kind];
        if let Some(vis_state) = self.json_attribute(object, "visState") {
            for agg in vis_state["aggs"].as_array().into_iter().flatten() {
                let agg_type = agg["type"].as_str().unwrap_or_default();
                if let Some(field) = agg["params"]["field"].as_str() {
                    let place = format!("visState agg {} ({agg_type})", agg["id"]);
                    self.field(
                        object,
                        place,
                        &kinds[0],
                        field,
                        Need::of_operation(agg_type),
                    );
                }
                for filter in agg["params"]["filters"].as_array().into_iter().flatten() {
                    self.query(
                        object,
                        &format!("visState agg {} filters", agg["id"]),
                        &filter["input"],
                        &kinds,
                    );
                }
            }
        }
        self.query(object, "searchSourceJSON query", &source["query"], &kinds);
        self.filters(object, "searchSourceJSON filter", &source["filter"], &kinds);
        self.kinds_of
            .insert(object.id.clone(), kinds.into_iter().collect());
    }

    fn dashboard(&mut self, object: &SavedObject) {
        let Some(panels) = self.json_attribute(object, "panelsJSON") else {
            return;
        };
        let Some(panels) = panels.as_array() else {
            self.problems
                .push(format!("{}: panelsJSON is not an array", object.label()));
            return;
        };
        if panels.is_empty() {
            self.problems.push(format!("{}: no panels", object.label()));
        }
        let mut kinds = BTreeSet::new();
        for panel in panels {
            let index = panel["panelIndex"].as_str().unwrap_or_default();
            let (Some(type_), Some(ref_name)) =
                (panel["type"].as_str(), panel["panelRefName"].as_str())
            else {
                self.problems.push(format!(
                    "{}: panel \"{index}\" is not a saved object by reference (needs type and \
                     panelRefName; by-value panels are not checked)",
                    object.label()
                ));
                continue;
            };
            // Kibana prefixes panel references with the panel index (`<panelIndex>:panel_<panelIndex>`).
            let name = format!("{index}:{ref_name}");
            let Some(reference) = object.reference(&name) else {
                self.problems.push(format!(
                    "{}: panel \"{index}\": no reference named \"{name}\"",
                    object.label()
                ));
                continue;
            };
            if reference.type_ != type_ {
                self.problems.push(format!(
                    "{}: panel \"{index}\" is a {type_}, its reference points to a {}",
                    object.label(),
                    reference.type_
                ));
            }
            let grid = &panel["gridData"];
            let fits = grid["x"]
                .as_u64()
                .zip(grid["w"].as_u64())
                .is_some_and(|(x, w)| w > 0 && x + w <= 48);
            if !fits || grid["i"].as_str() != Some(index) {
                self.problems.push(format!("{}: panel \"{index}\": gridData {grid} is off the 48-column grid or not keyed by the panel index", object.label()));
            }
            kinds.extend(
                self.kinds_of
                    .get(&reference.id)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        // The dashboard's own query and filters apply to every panel.
        let kinds: Vec<String> = kinds.into_iter().collect();
        if let Some(source) = self.search_source(object) {
            self.query(object, "searchSourceJSON query", &source["query"], &kinds);
            self.filters(object, "searchSourceJSON filter", &source["filter"], &kinds);
        }
    }

    /// `kibanaSavedObjectMeta.searchSourceJSON`, parsed (absent: an empty source).
    fn search_source(&mut self, object: &SavedObject) -> Option<Value> {
        match object.attributes["kibanaSavedObjectMeta"]["searchSourceJSON"].as_str() {
            None => Some(json!({})),
            Some(text) => match serde_json::from_str(text) {
                Ok(source) => Some(source),
                Err(e) => {
                    self.problems.push(format!(
                        "{}: searchSourceJSON is not JSON: {e}",
                        object.label()
                    ));
                    None
                }
            },
        }
    }

    fn search_source_kind(&mut self, object: &SavedObject, source: &Value) -> Option<String> {
        match source["indexRefName"].as_str() {
            Some(name) => self.kind_of_reference(object, name),
            None => {
                self.problems.push(format!(
                    "{}: searchSourceJSON names no data view (indexRefName)",
                    object.label()
                ));
                None
            }
        }
    }

    /// An attribute that holds JSON as a string (Kibana's `...JSON`, `fields`, `sourceFilters`).
    fn json_attribute(&mut self, object: &SavedObject, attribute: &str) -> Option<Value> {
        let text = object.attributes[attribute].as_str()?;
        match serde_json::from_str(text) {
            Ok(value) => Some(value),
            Err(e) => {
                self.problems
                    .push(format!("{}: {attribute} is not JSON: {e}", object.label()));
                None
            }
        }
    }

    /// A `{query, language}` (KQL or Lucene): every field it names must be searchable in each kind.
    fn query(&mut self, object: &SavedObject, place: &str, query: &Value, kinds: &[String]) {
        let Some(text) = query["query"].as_str() else {
            return;
        };
        for field in query_fields(text) {
            for kind in kinds {
                self.field(
                    object,
                    format!("{place} \"{text}\""),
                    kind,
                    &field,
                    Need::Searchable,
                );
            }
        }
    }

    /// Filter pills: the field in `meta.key` and in the query they carry.
    fn filters(&mut self, object: &SavedObject, place: &str, filters: &Value, kinds: &[String]) {
        for filter in filters.as_array().into_iter().flatten() {
            if filter["meta"]["disabled"] == true {
                continue;
            }
            let own_kind = match filter["meta"]["indexRefName"].as_str() {
                Some(name) => self.kind_of_reference(object, name).into_iter().collect(),
                None => kinds.to_vec(),
            };
            let mut fields: BTreeSet<String> = filter["meta"]["key"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect();
            for clause in ["match_phrase", "match", "term", "terms", "range", "exists"] {
                if let Some(map) = filter["query"][clause].as_object() {
                    fields.extend(map.keys().filter(|k| *k != "field").cloned());
                }
            }
            if let Some(field) = filter["query"]["exists"]["field"].as_str() {
                fields.insert(field.to_owned());
            }
            for field in fields {
                for kind in &own_kind {
                    self.field(object, place, kind, &field, Need::Searchable);
                }
            }
        }
    }
}

fn parse_object(value: &Value) -> Result<SavedObject, String> {
    let text = |key: &str| {
        value[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no string \"{key}\" in {}", shorten(value)))
    };
    let (type_, id) = (text("type")?, text("id")?);
    // An export carries both; without them Kibana would run every migration from scratch.
    text("coreMigrationVersion")?;
    text("typeMigrationVersion")?;
    if !value["attributes"].is_object() {
        return Err(format!("{type_} {id}: no attributes object"));
    }
    let references = value["references"]
        .as_array()
        .ok_or_else(|| format!("{type_} {id}: no references array"))?
        .iter()
        .map(
            |r| match (r["name"].as_str(), r["type"].as_str(), r["id"].as_str()) {
                (Some(name), Some(ref_type), Some(ref_id)) => Ok(Reference {
                    name: name.to_owned(),
                    type_: ref_type.to_owned(),
                    id: ref_id.to_owned(),
                }),
                _ => Err(format!(
                    "{type_} {id}: reference {r} lacks name, type or id"
                )),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SavedObject {
        type_,
        id,
        attributes: value["attributes"].clone(),
        references,
    })
}

fn shorten(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(120).collect()
}

/// The field names in a KQL or Lucene query: the words directly followed by `:` or a range
/// operator (`<`, `>`, `<=`, `>=`), outside quoted strings. Enough for what dashboards hold
/// (`event_type : "CustomerRegistered" and not actor_name : system`); KQL's nested
/// `parent:{ child: x }` would report `child` unprefixed, and wildcard field names are skipped.
fn query_fields(query: &str) -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    let mut word = String::new();
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            word.clear();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            continue;
        }
        if c.is_alphanumeric() || matches!(c, '_' | '.' | '@' | '-' | '*') {
            word.push(c);
            continue;
        }
        if c == '\\' {
            chars.next(); // an escaped character belongs to a value
            word.clear();
            continue;
        }
        if !word.is_empty() {
            let mut next = c;
            while next.is_whitespace() {
                match chars.peek() {
                    Some(&n) if n.is_whitespace() => {
                        chars.next();
                    }
                    Some(&n) => {
                        next = n;
                        break;
                    }
                    None => break,
                }
            }
            if matches!(next, ':' | '<' | '>') && !word.contains('*') {
                fields.insert(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    fields
}

#[test]
fn query_fields_finds_fields_not_values() {
    let fields = |q: &str| query_fields(q).into_iter().collect::<Vec<_>>();
    assert_eq!(
        fields(r#"event_type : "CustomerRegistered""#),
        ["event_type"]
    );
    assert_eq!(
        fields(r#"event_type:CustomerUpdated and not actor.name : "a: b" or version >= 2"#),
        ["actor.name", "event_type", "version"]
    );
    assert_eq!(fields("recorded_at < now-1d"), ["recorded_at"]);
    assert_eq!(fields("*: x and plain words"), Vec::<String>::new());
    assert_eq!(fields(""), Vec::<String>::new());
}

#[test]
fn walk_reads_every_field_of_the_saved_objects() {
    let walk = Walk::of(&read(&repo_path("infra/kibana/saved_objects.ndjson")));
    assert!(walk.problems.is_empty(), "{:#?}", walk.problems);
    let uses: BTreeSet<(&str, &str, Need)> = walk
        .uses
        .iter()
        .map(|u| (u.kind.as_str(), u.field.as_str(), u.need))
        .collect();
    // A few that must be found; the live test checks them all against the mappings.
    for expected in [
        ("customers", "updated_at", Need::Date),
        ("history", "at", Need::Date),
        ("history", "at", Need::Aggregatable),
        ("history", "actor.name", Need::Leaf),
        ("audit", "recorded_at", Need::Date),
        ("audit", "event_type", Need::Aggregatable),
        ("audit", "event_type", Need::Searchable),
        ("audit", "actor_name", Need::Aggregatable),
    ] {
        assert!(
            uses.contains(&expected),
            "{expected:?} not found in {uses:#?}"
        );
    }
    assert!(
        walk.uses.len() >= MIN_FIELD_REFERENCES,
        "{} uses",
        walk.uses.len()
    );
}

#[test]
fn walk_reads_legacy_visualizations_and_filter_pills() {
    // No legacy visualization ships today; this keeps their path honest should one be added.
    let vis_state = json!({
        "title": "Events by actor",
        "type": "histogram",
        "aggs": [
            {"id": "1", "type": "count", "params": {}},
            {"id": "2", "type": "date_histogram", "params": {"field": "recorded_at"}},
            {"id": "3", "type": "terms", "params": {"field": "actor_name", "size": 5}},
        ],
    });
    let search_source = json!({
        "query": {"query": "aggregate : customer", "language": "kuery"},
        "filter": [{
            "meta": {"key": "event_type", "type": "phrase", "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"},
            "query": {"match_phrase": {"event_type": "CustomerArchived"}},
        }],
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    });
    let data_view = json!({
        "type": "index-pattern", "id": "audit", "coreMigrationVersion": "8.8.0",
        "typeMigrationVersion": "8.0.0", "references": [],
        "attributes": {"title": "chronicle-audit-acme", "timeFieldName": "recorded_at"},
    });
    let audit_ref = |name: &str| json!({"type": "index-pattern", "id": "audit", "name": name});
    let visualization = json!({
        "type": "visualization", "id": "events-by-actor", "coreMigrationVersion": "8.8.0",
        "typeMigrationVersion": "8.5.0",
        "references": [
            audit_ref("kibanaSavedObjectMeta.searchSourceJSON.index"),
            audit_ref("kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"),
        ],
        "attributes": {
            "title": "Events by actor",
            "visState": vis_state.to_string(),
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source.to_string()},
        },
    });
    let walk = Walk::of(&format!("{data_view}\n{visualization}\n"));
    let uses: BTreeSet<(&str, &str, Need)> = walk
        .uses
        .iter()
        .filter(|u| u.object == "visualization events-by-actor")
        .map(|u| (u.kind.as_str(), u.field.as_str(), u.need))
        .collect();
    let expected = BTreeSet::from([
        ("audit", "recorded_at", Need::Date),
        ("audit", "actor_name", Need::Aggregatable),
        ("audit", "aggregate", Need::Searchable),
        ("audit", "event_type", Need::Searchable),
    ]);
    assert_eq!(uses, expected);
    // Only the two data views that are not in this file are missing.
    assert!(
        walk.problems
            .iter()
            .all(|p| p.starts_with("data views cover")),
        "{:#?}",
        walk.problems
    );
}
