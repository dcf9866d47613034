//! Identifiers carried by every event.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("tenant id must match ^[a-z][a-z0-9-]{{1,62}}$")]
    Tenant,
    #[error(
        "stream id must be `<category>-<id>` with a lowercase category and a non-empty id of at most 200 characters"
    )]
    Stream,
}

/// A tenant's id: a lowercase slug (`^[a-z][a-z0-9-]{1,62}$`).
///
/// Every tenant-scoped row, record and document carries one; it is the partition key of
/// Chronicle's isolation, so an invalid one is refused before it reaches storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

// Written out: a derived schema would be the bare string of the serde `try_from` source.
impl JsonSchema for TenantId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TenantId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[a-z][a-z0-9-]{1,62}$"})
    }
}

impl TenantId {
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        let mut chars = value.chars();
        let valid = (2..=63).contains(&value.len())
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(value))
        } else {
            Err(InvalidId::Tenant)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream's id: `<category>-<id>`, e.g. `customer-0190c3b2-…`.
///
/// The category (everything before the first `-`) is the aggregate type: it names the
/// Kafka topic (`chronicle.<category>.events`) and the projections interested in the
/// stream, the same convention EventStoreDB uses for category streams.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl JsonSchema for StreamId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StreamId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[a-z][a-z_]*-.+$", "maxLength": StreamId::MAX_LEN})
    }
}

impl StreamId {
    pub const MAX_LEN: usize = 200;

    /// The stream of one aggregate instance.
    pub fn for_aggregate(category: &str, id: impl fmt::Display) -> Result<Self, InvalidId> {
        Self::parse(format!("{category}-{id}"))
    }

    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        let valid = value.chars().count() <= Self::MAX_LEN
            && match value.split_once('-') {
                Some((category, id)) => {
                    !id.is_empty()
                        && category.starts_with(|c: char| c.is_ascii_lowercase())
                        && category.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }
                None => false,
            };
        if valid {
            Ok(Self(value))
        } else {
            Err(InvalidId::Stream)
        }
    }

    /// The aggregate type: the part before the first `-`.
    pub fn category(&self) -> &str {
        self.0
            .split_once('-')
            .map_or(&self.0, |(category, _)| category)
    }

    /// The aggregate instance's id: the part after the first `-`.
    pub fn instance_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_lowercase_slugs() {
        for valid in ["acme", "a1", "acme-corp-2"] {
            assert!(TenantId::parse(valid).is_ok(), "{valid}");
        }
        let too_long = format!("a{}", "b".repeat(63));
        for invalid in [
            "",
            "a",
            "Acme",
            "1acme",
            "-acme",
            "acme_corp",
            "ac me",
            too_long.as_str(),
        ] {
            assert_eq!(
                TenantId::parse(invalid),
                Err(InvalidId::Tenant),
                "{invalid}"
            );
        }
    }

    #[test]
    fn stream_ids_name_their_category() {
        let stream = StreamId::for_aggregate("customer", "0190-abc").unwrap();
        assert_eq!(stream.as_str(), "customer-0190-abc");
        assert_eq!(stream.category(), "customer");
        assert_eq!(stream.instance_id(), "0190-abc");
        for invalid in ["customer", "customer-", "-x", "Customer-1", "cust0mer-1"] {
            assert_eq!(
                StreamId::parse(invalid),
                Err(InvalidId::Stream),
                "{invalid}"
            );
        }
    }

    #[test]
    fn ids_refuse_invalid_values_when_deserialized() {
        assert!(serde_json::from_str::<TenantId>("\"Bad Tenant\"").is_err());
        assert!(serde_json::from_str::<StreamId>("\"nocategory\"").is_err());
        let tenant: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&tenant).unwrap(), "\"acme\"");
    }
}
