//! How a Rust event type maps to its stored name, version and payload.

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

/// Why a stored event could not be decoded into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{event_type}` for aggregate `{aggregate}`")]
    UnknownType {
        aggregate: &'static str,
        event_type: String,
    },
    #[error("`{event_type}` has no schema version {schema_version} (current is {current})")]
    UnknownVersion {
        event_type: &'static str,
        schema_version: u32,
        current: u32,
    },
    #[error("`{event_type}` v{schema_version} payload is invalid: {source}")]
    InvalidPayload {
        event_type: &'static str,
        schema_version: u32,
        #[source]
        source: serde_json::Error,
    },
}

/// One event type: a past-tense fact with a stable name and a schema version.
///
/// The payload stored is the type's serde JSON. Reading it is lenient: fields it does not
/// know are ignored (a newer writer may add some) and values are taken as recorded, with no
/// business rule re-applied (see `values`); only the shape must fit. When the shape changes, bump `VERSION`
/// and teach [`EventType::upcast`] to lift the previous version's JSON one step; stored
/// events are never rewritten, so every reader goes through `upcast`.
pub trait EventType: Serialize + DeserializeOwned + JsonSchema {
    /// The stored `event_type`, e.g. `CustomerRegistered`. Never change it.
    const NAME: &'static str;
    /// The schema version new events are written with.
    const VERSION: u32;

    /// Lifts a payload stored as `from_version` to `from_version + 1`.
    ///
    /// Only called with `from_version < VERSION`; types still at their first version
    /// have nothing to lift.
    fn upcast(
        from_version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, DecodeError> {
        let _ = payload;
        Err(DecodeError::UnknownVersion {
            event_type: Self::NAME,
            schema_version: from_version,
            current: Self::VERSION,
        })
    }

    /// Decodes a stored payload of any known version into the current type.
    fn decode(schema_version: u32, payload: serde_json::Value) -> Result<Self, DecodeError> {
        if schema_version == 0 || schema_version > Self::VERSION {
            return Err(DecodeError::UnknownVersion {
                event_type: Self::NAME,
                schema_version,
                current: Self::VERSION,
            });
        }
        let mut payload = payload;
        for version in schema_version..Self::VERSION {
            payload = Self::upcast(version, payload)?;
        }
        serde_json::from_value(payload).map_err(|source| DecodeError::InvalidPayload {
            event_type: Self::NAME,
            schema_version,
            source,
        })
    }
}

/// The events of one aggregate, as one enum.
pub trait DomainEvent: Sized {
    /// The aggregate type: the stream category and the `<aggregate>` of its Kafka topic.
    const AGGREGATE: &'static str;
    /// Every event type of the aggregate, by its stored name.
    const EVENT_TYPES: &'static [&'static str];

    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn to_payload(&self) -> serde_json::Value;
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<Self, DecodeError>;
    /// The JSON Schema of every event type of the aggregate, at its current version.
    fn json_schemas() -> Vec<crate::json_schema::EventSchema>;
}

/// Declares an aggregate's event enum, one variant per [`EventType`], and derives its
/// [`DomainEvent`] implementation so names and versions have one source of truth.
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident for $aggregate:literal {
            $($variant:ident($event:ty)),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($event)),+
        }

        impl $crate::event::DomainEvent for $name {
            const AGGREGATE: &'static str = $aggregate;
            const EVENT_TYPES: &'static [&'static str] =
                &[$(<$event as $crate::event::EventType>::NAME),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$event as $crate::event::EventType>::NAME),+
                }
            }

            fn schema_version(&self) -> u32 {
                match self {
                    $(Self::$variant(_) => <$event as $crate::event::EventType>::VERSION),+
                }
            }

            fn to_payload(&self) -> serde_json::Value {
                let payload = match self {
                    $(Self::$variant(event) => serde_json::to_value(event)),+
                };
                payload.expect("event types serialize to JSON without failure")
            }

            fn decode(
                event_type: &str,
                schema_version: u32,
                payload: serde_json::Value,
            ) -> Result<Self, $crate::event::DecodeError> {
                $(
                    if event_type == <$event as $crate::event::EventType>::NAME {
                        return <$event as $crate::event::EventType>::decode(schema_version, payload)
                            .map(Self::$variant);
                    }
                )+
                Err($crate::event::DecodeError::UnknownType {
                    aggregate: $aggregate,
                    event_type: event_type.to_owned(),
                })
            }

            fn json_schemas() -> Vec<$crate::json_schema::EventSchema> {
                vec![$($crate::json_schema::EventSchema::of::<$event>($aggregate)),+]
            }
        }

        $(
            impl From<$event> for $name {
                fn from(event: $event) -> Self {
                    Self::$variant(event)
                }
            }
        )+
    };
}
pub(crate) use domain_events;
