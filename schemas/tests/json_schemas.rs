//! The checked-in JSON Schemas under `schemas/json/` must equal what the types generate.
//! Run `UPDATE_SCHEMAS=1 cargo test -p schemas` after changing an event type.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn json_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("json")
}

fn rendered(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("schemas serialize");
    text.push('\n');
    text
}

fn checked_in_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                let relative = path.strip_prefix(dir).expect("under the json dir");
                files.insert(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files
}

#[test]
fn checked_in_json_schemas_match_the_types() {
    let dir = json_dir();
    let generated = schemas::json_schema::all();

    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        let _ = fs::remove_dir_all(&dir);
        for schema in &generated {
            let path = dir.join(&schema.file);
            fs::create_dir_all(path.parent().expect("files live in a directory")).unwrap();
            fs::write(&path, rendered(&schema.schema)).unwrap();
        }
    }

    let expected: BTreeSet<String> = generated.iter().map(|s| s.file.clone()).collect();
    let on_disk = checked_in_files(&dir);
    assert_eq!(
        on_disk, expected,
        "schemas/json holds other files than the types generate; run `UPDATE_SCHEMAS=1 cargo test -p schemas`"
    );
    for schema in &generated {
        let path = dir.join(&schema.file);
        let checked_in = fs::read_to_string(&path).unwrap();
        assert_eq!(
            checked_in,
            rendered(&schema.schema),
            "{} differs from its type; run `UPDATE_SCHEMAS=1 cargo test -p schemas`",
            path.display()
        );
    }
}

#[test]
fn every_event_type_has_one_versioned_schema_file() {
    let files: Vec<String> = schemas::json_schema::all()
        .into_iter()
        .map(|s| s.file)
        .collect();
    for expected in [
        "envelope.json",
        "tenant/TenantRegistered.v1.json",
        "tenant/TenantSuspended.v1.json",
        "tenant/TenantReactivated.v1.json",
        "user/UserRegistered.v1.json",
        "customer/CustomerRegistered.v1.json",
        "customer/CustomerUpdated.v1.json",
        "customer/CustomerArchived.v2.json",
    ] {
        assert!(files.iter().any(|f| f == expected), "missing {expected}");
    }
    let unique: BTreeSet<&String> = files.iter().collect();
    assert_eq!(unique.len(), files.len(), "two types claim one file");
}
