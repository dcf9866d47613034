//! Fixtures for the projector's tests: realistic events appended to the store.

#![allow(dead_code)] // each test binary uses its own subset

use event_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId, TenantId};
use schemas::values::AddressLine;
use schemas::{
    CountryCode, CustomerArchived, CustomerEvent, CustomerName, CustomerRegistered,
    CustomerUpdated, EmailAddress, PhoneNumber, PostalAddress, Tags, TenantEvent, TenantName,
    TenantRegistered,
};
use uuid::Uuid;

pub fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

pub fn metadata(actor: &str) -> EventMetadata {
    EventMetadata {
        actor_id: Uuid::now_v7(),
        actor_name: actor.to_owned(),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: Uuid::now_v7().to_string(),
        causation_id: Uuid::now_v7().to_string(),
    }
}

pub async fn register_tenant(store: &EventStore, id: &str) {
    let event = TenantEvent::from(TenantRegistered {
        name: TenantName::parse(id).unwrap(),
        pending: false,
    });
    let stream = StreamId::for_aggregate("tenant", id).unwrap();
    store
        .append_to_stream(
            &tenant(id),
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(&event, metadata("Platform"))],
        )
        .await
        .unwrap();
}

pub fn registered(name: &str, email: &str, city: Option<&str>, tags: &[&str]) -> CustomerEvent {
    CustomerEvent::from(CustomerRegistered {
        name: CustomerName::parse(name).unwrap(),
        email: EmailAddress::parse(email).unwrap(),
        phone: Some(PhoneNumber::parse("+49 30 1234567").unwrap()),
        address: city.map(|city| PostalAddress {
            street: AddressLine::parse("Hauptstraße 1").unwrap(),
            city: AddressLine::parse(city).unwrap(),
            postal_code: AddressLine::parse("10115").unwrap(),
            country: CountryCode::parse("DE").unwrap(),
        }),
        tags: Tags::parse(tags).unwrap(),
    })
}

pub fn email_changed(email: &str) -> CustomerEvent {
    CustomerEvent::from(CustomerUpdated {
        email: Some(EmailAddress::parse(email).unwrap()),
        ..Default::default()
    })
}

pub fn renamed(name: &str) -> CustomerEvent {
    CustomerEvent::from(CustomerUpdated {
        name: Some(CustomerName::parse(name).unwrap()),
        ..Default::default()
    })
}

pub fn archived() -> CustomerEvent {
    CustomerEvent::from(CustomerArchived {
        reason: "moved away".to_owned(),
    })
}

/// Appends `events` to a new customer stream of `tenant_id`; returns the customer id.
pub async fn customer(store: &EventStore, tenant_id: &str, events: &[CustomerEvent]) -> Uuid {
    let id = Uuid::now_v7();
    let stream = StreamId::for_aggregate("customer", id).unwrap();
    let events = events
        .iter()
        .map(|e| NewEvent::new(e, metadata("Mia Member")))
        .collect();
    store
        .append_to_stream(
            &tenant(tenant_id),
            &stream,
            ExpectedVersion::NoStream,
            events,
        )
        .await
        .unwrap();
    id
}

/// Polls the read model until the customer is at `version` (or 60 s pass); returns the
/// customer as last read either way, for the caller to judge.
pub async fn view_at(
    store: &EventStore,
    tenant_id: &str,
    id: Uuid,
    version: u64,
) -> Option<read_model::customers::CustomerRecord> {
    let (Ok(view) | Err(view)) =
        service::eventually(std::time::Duration::from_secs(60), || async {
            let view = read_model::customers::find(store, &tenant(tenant_id), id)
                .await
                .unwrap();
            if view.as_ref().is_some_and(|v| v.version >= version) {
                Ok(view)
            } else {
                Err(view)
            }
        })
        .await;
    view
}
