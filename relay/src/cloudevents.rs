//! How a stored event becomes a Kafka record, in the CloudEvents Kafka binary content
//! mode: the envelope JSON is the value, the stream id the key (so a stream's events share
//! a partition and keep their order), and the CloudEvents attributes are `ce_` headers.

use chrono::SecondsFormat;
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

impl KafkaRecord {
    pub fn for_event(topic_prefix: &str, event: &EventEnvelope) -> Self {
        let aggregate = event.stream_id.category();
        let headers = vec![
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", event.event_id.to_string()),
            (
                "ce_source",
                format!("/tenants/{}/{aggregate}", event.tenant_id),
            ),
            ("ce_type", event.event_type.clone()),
            (
                "ce_time",
                event
                    .recorded_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("ce_subject", event.stream_id.to_string()),
            ("ce_tenantid", event.tenant_id.to_string()),
            ("ce_partitionkey", event.stream_id.to_string()),
            // Beyond the contract: lets a consumer pick an upcaster without parsing the value.
            ("ce_schemaversion", event.schema_version.to_string()),
            ("content-type", CONTENT_TYPE.to_owned()),
        ];
        Self {
            topic: topic_for(topic_prefix, aggregate),
            key: event.stream_id.to_string(),
            value: serde_json::to_vec(event).expect("envelopes serialize to JSON"),
            headers,
        }
    }
}
