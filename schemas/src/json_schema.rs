//! JSON Schema for every event type and the envelope, generated from the Rust types.
//!
//! The files under `schemas/json/` are checked in for consumers outside Rust (analysts,
//! other services); `tests/json_schemas.rs` fails when they drift from the types, and
//! `UPDATE_SCHEMAS=1 cargo test -p schemas` rewrites them.

use schemars::{Schema, SchemaGenerator, generate::SchemaSettings};

use crate::event::EventType;
use crate::{AGGREGATE_TYPES, EventEnvelope};

/// The schema of one event type at its current version.
#[derive(Debug, Clone)]
pub struct EventSchema {
    /// Path under `schemas/json/`, e.g. `customer/CustomerRegistered.v1.json`.
    pub file: String,
    pub schema: Schema,
}

impl EventSchema {
    pub fn of<E: EventType>(aggregate: &str) -> Self {
        Self {
            file: format!("{aggregate}/{}.v{}.json", E::NAME, E::VERSION),
            schema: generator().into_root_schema_for::<E>(),
        }
    }
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// Every schema Chronicle publishes: the envelope and each event type.
pub fn all() -> Vec<EventSchema> {
    let mut schemas = vec![EventSchema {
        file: "envelope.json".to_owned(),
        schema: generator().into_root_schema_for::<EventEnvelope>(),
    }];
    for aggregate in AGGREGATE_TYPES {
        schemas.extend((aggregate.json_schemas)());
    }
    schemas
}
