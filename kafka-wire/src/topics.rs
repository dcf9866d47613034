//! The topics of Chronicle's events: one per aggregate type, `<prefix>.<aggregate>.events`,
//! created with Chronicle's settings before the first record goes to them (automatic topic
//! creation is off on Chronicle's brokers, and a topic made by accident would have the
//! broker's defaults instead of ours).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Creates `topics` with unlimited retention (they are a replay source too); a topic
/// that already exists is left as it is.
pub async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
) -> Result<(), KafkaError> {
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            )
            .set("retention.ms", "-1")
            .set("retention.bytes", "-1")
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                tracing::warn!(%topic, ?code, "topic creation failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
