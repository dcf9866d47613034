//! Fixtures the integration tests of every crate share: realistic events and tenants, and
//! the store filled with many of them.

use crate::{EventMetadata, NewEvent, StreamId, TenantId};
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
    store: &crate::EventStore,
    count: usize,
) -> Vec<crate::GlobalLogEvent> {
    let outcome = service::eventually(std::time::Duration::from_secs(30), || async {
        let read = store
            .read_global_log(crate::LogPosition::START, 1_000)
            .await
            .unwrap();
        if read.len() >= count {
            Ok(read)
        } else {
            Err(read)
        }
    })
    .await;
    // The callers assert on what was read, so the last reading is theirs either way.
    outcome.unwrap_or_else(|read| read)
}

/// Appends `count` events spread over `streams` customer streams of `tenant`, in
/// transactions of up to 100; returns every event id.
pub async fn append_many(
    store: &crate::EventStore,
    tenant: &TenantId,
    streams: usize,
    count: usize,
) -> Vec<Uuid> {
    use crate::ExpectedVersion;
    let stream_ids: Vec<StreamId> = (0..streams).map(|_| customer_stream()).collect();
    let mut versions = vec![0u64; streams];
    let mut ids = Vec::with_capacity(count);
    let mut written = 0;
    while written < count {
        let slot = (written / 100) % streams;
        let size = (count - written).min(100);
        let events: Vec<NewEvent> = (0..size)
            .map(|i| {
                if versions[slot] == 0 && i == 0 {
                    registered("Bulk")
                } else {
                    renamed(&format!("Bulk {i}"))
                }
            })
            .collect();
        ids.extend(events.iter().map(|e| e.event_id));
        let appended = store
            .append_to_stream(
                tenant,
                &stream_ids[slot],
                ExpectedVersion::Exact(versions[slot]),
                events,
            )
            .await
            .unwrap();
        versions[slot] = appended.next_expected_version;
        written += size;
    }
    ids
}
