//! Every aggregate type Chronicle stores, in one list. A stream's category is its aggregate
//! type (`customer-<uuid>`), and each type has a Kafka topic of its own; the relay creates
//! those topics, the projector subscribes to them and checks what it reads against them,
//! and the API enumerates them. Adding an aggregate type is one line here.

use serde_json::Value;

use crate::event::{DecodeError, DomainEvent};
use crate::json_schema::EventSchema;
use crate::{CustomerEvent, TenantEvent, UserEvent};

/// The aggregate types, in the order their topics are created.
pub const AGGREGATE_TYPES: &[AggregateType] = &[
    AggregateType::of::<TenantEvent>(),
    AggregateType::of::<UserEvent>(),
    AggregateType::of::<CustomerEvent>(),
];

/// Every aggregate type's name, in the same order (for readers of every topic).
pub const AGGREGATE_NAMES: [&str; AGGREGATE_TYPES.len()] = {
    let mut names = [""; AGGREGATE_TYPES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = AGGREGATE_TYPES[i].name;
        i += 1;
    }
    names
};

/// One aggregate type: its name (the stream category) and its event types.
#[derive(Debug, Clone, Copy)]
pub struct AggregateType {
    pub name: &'static str,
    /// Every event type it has, by stored name.
    pub event_types: &'static [&'static str],
    decodes: fn(&str, u32, Value) -> Result<(), DecodeError>,
    /// The JSON Schema of each of its event types (checked in under `schemas/json/`).
    pub json_schemas: fn() -> Vec<EventSchema>,
}

impl AggregateType {
    const fn of<E: DomainEvent>() -> Self {
        Self {
            name: E::AGGREGATE,
            event_types: E::EVENT_TYPES,
            decodes: decodes::<E>,
            json_schemas: E::json_schemas,
        }
    }

    /// The aggregate type named `name`, if Chronicle has it.
    pub fn named(name: &str) -> Option<&'static Self> {
        AGGREGATE_TYPES
            .iter()
            .find(|aggregate| aggregate.name == name)
    }

    /// Every aggregate type's name.
    pub fn names() -> impl Iterator<Item = &'static str> {
        AGGREGATE_NAMES.iter().copied()
    }

    /// Every event type of every aggregate, by stored name.
    pub fn all_event_types() -> impl Iterator<Item = &'static str> {
        AGGREGATE_TYPES
            .iter()
            .flat_map(|aggregate| aggregate.event_types.iter().copied())
    }

    /// Whether a stored event of this aggregate decodes (through the upcasters) into one of
    /// its event types.
    pub fn decodes(
        &self,
        event_type: &str,
        schema_version: u32,
        payload: Value,
    ) -> Result<(), DecodeError> {
        (self.decodes)(event_type, schema_version, payload)
    }
}

fn decodes<E: DomainEvent>(
    event_type: &str,
    schema_version: u32,
    payload: Value,
) -> Result<(), DecodeError> {
    E::decode(event_type, schema_version, payload).map(|_| ())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_aggregate_is_listed_once_with_its_event_types() {
        let names: Vec<&str> = AggregateType::names().collect();
        assert_eq!(names, ["tenant", "user", "customer"]);
        assert_eq!(AGGREGATE_NAMES.as_slice(), names.as_slice());
        let customer = AggregateType::named("customer").unwrap();
        assert!(customer.event_types.contains(&"CustomerRegistered"));
        assert!(AggregateType::all_event_types().any(|t| t == "UserRegistered"));
        assert!(AggregateType::named("invoice").is_none());
    }

    #[test]
    fn decoding_goes_through_the_aggregates_own_types() {
        let customer = AggregateType::named("customer").unwrap();
        assert!(
            customer.decodes("CustomerArchived", 1, json!({})).is_ok(),
            "v1 is upcast"
        );
        assert!(matches!(
            customer.decodes("TenantRegistered", 1, json!({})),
            Err(DecodeError::UnknownType { .. })
        ));
    }
}
