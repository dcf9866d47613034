//! The store refuses an event too large for what comes after it (a Kafka record, an
//! Elasticsearch document) before storing anything, with the size and the limit.

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{customer_stream, metadata, registered, tenant};
use event_store::{EventStore, EventStoreError, ExpectedVersion, MAX_EVENT_BYTES, NewEvent};
use serde_json::json;
use uuid::Uuid;

fn with_payload_of(bytes: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        aggregate: "customer",
        event_type: "CustomerRegistered",
        schema_version: 1,
        payload: json!({"name": "x".repeat(bytes), "email": "big@example.com"}),
        metadata: metadata(),
    }
}

#[tokio::test]
async fn an_event_over_the_limit_is_refused_and_nothing_of_its_append_is_stored() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(2).await);
    let acme = tenant("acme");
    let stream = customer_stream();

    // 1 MB: the size Kafka refuses today, which stalled the relay.
    let refused = store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::NoStream,
            vec![registered("Small"), with_payload_of(1024 * 1024)],
        )
        .await;
    match refused {
        Err(EventStoreError::EventTooLarge { size, max }) => {
            assert!(size > 1024 * 1024, "{size}");
            assert_eq!(max, MAX_EVENT_BYTES);
        }
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    let stored = store.read_stream(&acme, &stream, 1, 10).await.unwrap();
    assert!(
        stored.is_empty(),
        "not even the small event of the same append"
    );

    // Just under the limit is stored.
    let fits = with_payload_of(MAX_EVENT_BYTES - 4096);
    store
        .append_to_stream(&acme, &stream, ExpectedVersion::NoStream, vec![fits])
        .await
        .unwrap();
    assert_eq!(
        store
            .read_stream(&acme, &stream, 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
