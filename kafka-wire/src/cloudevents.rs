//! How a stored event becomes a Kafka record, in the CloudEvents Kafka binary content
//! mode: the envelope JSON is the value, the stream id the key (so a stream's events share
//! a partition and keep their order), and the CloudEvents attributes are `ce_` headers.

use chrono::SecondsFormat;
use event_store::RawLogEvent;
use schemas::EventEnvelope;

pub const CONTENT_TYPE: &str = "application/json";

/// The topic of an aggregate's events: `<prefix>.<aggregate>.events`.
pub fn topic_for(prefix: &str, aggregate: &str) -> String {
    format!("{prefix}.{aggregate}.events")
}

/// A record ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The CloudEvents `dataref` extension: on a record whose event was too large for Kafka,
/// where its data is. The value then carries the envelope with `payload: null` and empty
/// metadata values; consumers
/// read the event from the store (they read the store anyway).
pub const DATAREF: &str = "ce_dataref";

/// What the headers are made of; the same for a decoded envelope and a raw log event.
struct Head<'a> {
    event_id: uuid::Uuid,
    tenant: &'a str,
    stream: &'a str,
    aggregate: &'a str,
    event_type: &'a str,
    schema_version: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

impl Head<'_> {
    fn record(&self, topic_prefix: &str, value: Vec<u8>) -> KafkaRecord {
        let headers = vec![
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", self.event_id.to_string()),
            (
                "ce_source",
                format!("/tenants/{}/{}", self.tenant, self.aggregate),
            ),
            ("ce_type", self.event_type.to_owned()),
            (
                "ce_time",
                self.recorded_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("ce_subject", self.stream.to_owned()),
            ("ce_tenantid", self.tenant.to_owned()),
            ("ce_partitionkey", self.stream.to_owned()),
            // Beyond the contract: lets a consumer pick an upcaster without parsing the value.
            ("ce_schemaversion", self.schema_version.to_string()),
            ("content-type", CONTENT_TYPE.to_owned()),
        ];
        KafkaRecord {
            topic: topic_for(topic_prefix, self.aggregate),
            key: self.stream.to_owned(),
            value,
            headers,
        }
    }
}

impl KafkaRecord {
    /// The record of a decoded envelope.
    pub fn for_event(topic_prefix: &str, event: &EventEnvelope) -> Self {
        Head {
            event_id: event.event_id,
            tenant: event.tenant_id.as_str(),
            stream: event.stream_id.as_str(),
            aggregate: event.stream_id.category(),
            event_type: &event.event_type,
            schema_version: i64::from(event.schema_version),
            recorded_at: event.recorded_at,
        }
        .record(
            topic_prefix,
            serde_json::to_vec(event).expect("envelopes serialize to JSON"),
        )
    }

    /// The record of an event as the relay reads it: its payload copied, never parsed.
    pub fn for_logged(topic_prefix: &str, event: &RawLogEvent) -> Self {
        Self::head_of(event).record(topic_prefix, event.envelope_json())
    }

    /// The reference record of `event` (see [`DATAREF`]): where it is, not what it says.
    pub fn reference_for(topic_prefix: &str, event: &RawLogEvent) -> Self {
        let mut reference = Self::head_of(event).record(topic_prefix, event.reference_json());
        reference.headers.push((
            DATAREF,
            format!(
                "/tenants/{}/streams/{}/versions/{}",
                event.tenant_id, event.stream_id, event.stream_version
            ),
        ));
        reference
    }

    fn head_of(event: &RawLogEvent) -> Head<'_> {
        Head {
            event_id: event.event_id,
            tenant: &event.tenant_id,
            stream: &event.stream_id,
            aggregate: event.category(),
            event_type: &event.event_type,
            schema_version: i64::from(event.schema_version),
            recorded_at: event.recorded_at,
        }
    }

    /// Bytes on the wire, near enough: key, value and headers.
    pub fn size(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }
}
