//! Fixtures the event store's integration tests share: realistic events and tenants.

#![allow(dead_code)] // each test binary uses its own subset

use event_store::{EventMetadata, NewEvent, StreamId, TenantId};
use schemas::{
    CustomerEvent, CustomerName, CustomerRegistered, CustomerUpdated, EmailAddress, Tags,
};
use uuid::Uuid;

pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).expect("test tenant ids are valid")
}

pub fn customer_stream() -> StreamId {
    StreamId::for_aggregate("customer", Uuid::now_v7()).expect("valid stream id")
}

pub fn metadata() -> EventMetadata {
    EventMetadata {
        actor_id: Uuid::now_v7(),
        actor_name: "Test Actor".to_owned(),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: Uuid::now_v7().to_string(),
        causation_id: Uuid::now_v7().to_string(),
    }
}

pub fn registered(name: &str) -> NewEvent {
    let event = CustomerEvent::from(CustomerRegistered {
        name: CustomerName::parse(name).unwrap(),
        email: EmailAddress::parse("someone@example.com").unwrap(),
        phone: None,
        address: None,
        tags: Tags::default(),
    });
    NewEvent::new(&event, metadata())
}

pub fn renamed(name: &str) -> NewEvent {
    let event = CustomerEvent::from(CustomerUpdated {
        name: Some(CustomerName::parse(name).unwrap()),
        ..CustomerUpdated::default()
    });
    NewEvent::new(&event, metadata())
}

/// Reads the global log from the start until it holds `count` events or 30 s pass.
///
/// The commit-safe horizon is cluster-wide, so open transactions of tests running beside
/// this one (in other scratch databases) hold it back for a moment.
pub async fn read_global_log_until(
    store: &event_store::EventStore,
    count: usize,
) -> Vec<event_store::GlobalLogEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let read = store
            .read_global_log(event_store::LogPosition::START, 1_000)
            .await
            .unwrap();
        if read.len() >= count || std::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
