//! Chronicle's events on Kafka: what the relay writes and the projector reads, below both
//! so neither depends on the other.
//!
//! # Layout
//! - [`cloudevents`]: how an event becomes a Kafka record (topic, key, value, `ce_` headers),
//!   and the reference record of an event too large for Kafka ([`cloudevents::DATAREF`]).
//! - [`topics`]: creating the topics of the aggregate types (one each,
//!   [`cloudevents::topic_for`]) with Chronicle's settings.

pub mod cloudevents;
pub mod topics;

pub use cloudevents::{DATAREF, KafkaRecord, topic_for};
