//! A customer as the projections show it, folded from its stream, and the change history
//! between its versions. The projections read whole streams from the event store (the
//! source of truth) rather than patching their documents event by event: a redelivered,
//! late or missing Kafka record then cannot leave a document wrong, only stale until
//! the next record of the stream.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use schemas::{CustomerEvent, DecodeError, DomainEvent, EventEnvelope, PostalAddress, StreamId};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// The latest state of one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerView {
    pub tenant_id: String,
    pub customer_id: Uuid,
    pub stream_id: String,
    pub version: u64,
    pub global_position: u64,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub tags: Vec<String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

impl From<&PostalAddress> for Address {
    fn from(address: &PostalAddress) -> Self {
        Self {
            street: address.street.to_string(),
            city: address.city.to_string(),
            postal_code: address.postal_code.to_string(),
            country: address.country.to_string(),
        }
    }
}

/// One event's effect on a customer: the view before it (none before the registration)
/// and after it.
#[derive(Debug, Clone, Copy)]
pub struct ViewStep<'a> {
    pub previous: Option<&'a CustomerView>,
    pub next: &'a CustomerView,
}

/// Customer streams folded event by event, as a rebuild reads the log: each stream's
/// current view, and the streams with an event that does not decode (skipped whole from
/// there on, as the live projector parks them).
#[derive(Debug, Default)]
pub struct Folded {
    views: HashMap<StreamId, CustomerView>,
    pub undecodable: BTreeMap<StreamId, String>,
}

impl Folded {
    /// The view `envelope` takes its customer to, without keeping it yet ([`Folded::settle`]
    /// does); `None` for an event of another aggregate, of a stream that does not decode,
    /// or one that cannot apply (nothing before a registration: the live fold skips it too).
    pub fn next(&mut self, envelope: &EventEnvelope) -> Option<CustomerView> {
        let stream = &envelope.stream_id;
        if stream.category() != CustomerEvent::AGGREGATE || self.undecodable.contains_key(stream) {
            return None;
        }
        match step(self.views.get(stream), envelope) {
            Ok(next) => next,
            Err(error) => {
                self.undecodable.insert(
                    stream.clone(),
                    format!(
                        "version {} ({} v{}): {error}",
                        envelope.stream_version, envelope.event_type, envelope.schema_version
                    ),
                );
                self.views.remove(stream);
                None
            }
        }
    }

    /// The stream's current view.
    pub fn get(&self, stream: &StreamId) -> Option<&CustomerView> {
        self.views.get(stream)
    }

    /// Keeps `next` as the stream's current view.
    pub fn settle(&mut self, stream: StreamId, next: CustomerView) {
        self.views.insert(stream, next);
    }

    /// Every customer's last view.
    pub fn views(&self) -> Vec<&CustomerView> {
        self.views.values().collect()
    }
}

/// One version of a customer in its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub global_position: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub actor_id: Uuid,
    pub actor_name: String,
    pub request_id: String,
    pub changes: Vec<Change>,
}

/// A field's value before and after; `null` where it had none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// Decodes a stream's envelopes into customer events (through the upcasters).
pub fn decode(
    envelopes: &[EventEnvelope],
) -> Result<Vec<(&EventEnvelope, CustomerEvent)>, DecodeError> {
    envelopes
        .iter()
        .map(|e| {
            CustomerEvent::decode(&e.event_type, e.schema_version, e.payload.clone())
                .map(|event| (e, event))
        })
        .collect()
}

/// Folds a customer stream (oldest first) into its views after each event.
pub fn fold(envelopes: &[EventEnvelope]) -> Result<Vec<CustomerView>, DecodeError> {
    let mut views: Vec<CustomerView> = Vec::with_capacity(envelopes.len());
    for (envelope, event) in decode(envelopes)? {
        let next = apply(views.last(), envelope, &event);
        if let Some(next) = next {
            views.push(next);
        }
    }
    Ok(views)
}

/// One step of a fold, for callers that fold many streams event by event (a replay
/// reading the global log): the view after `envelope`, given the view before it.
/// `Ok(None)` when the event cannot apply (an update before the registration).
pub fn step(
    previous: Option<&CustomerView>,
    envelope: &EventEnvelope,
) -> Result<Option<CustomerView>, DecodeError> {
    let event = CustomerEvent::decode(
        &envelope.event_type,
        envelope.schema_version,
        envelope.payload.clone(),
    )?;
    Ok(apply(previous, envelope, &event))
}

fn apply(
    previous: Option<&CustomerView>,
    envelope: &EventEnvelope,
    event: &CustomerEvent,
) -> Option<CustomerView> {
    let stamp = |mut view: CustomerView| {
        view.version = envelope.stream_version;
        view.global_position = envelope.global_position;
        view.updated_at = envelope.recorded_at;
        view
    };
    match (previous, event) {
        (_, CustomerEvent::Registered(registered)) => Some(CustomerView {
            tenant_id: envelope.tenant_id.to_string(),
            customer_id: Uuid::parse_str(envelope.stream_id.instance_id()).unwrap_or_default(),
            stream_id: envelope.stream_id.to_string(),
            version: envelope.stream_version,
            global_position: envelope.global_position,
            name: registered.name.to_string(),
            email: registered.email.to_string(),
            phone: registered.phone.as_ref().map(ToString::to_string),
            address: registered.address.as_ref().map(Address::from),
            tags: registered
                .tags
                .as_slice()
                .iter()
                .map(ToString::to_string)
                .collect(),
            archived: false,
            created_at: envelope.recorded_at,
            updated_at: envelope.recorded_at,
        }),
        (Some(view), CustomerEvent::Updated(update)) => {
            let mut view = view.clone();
            if let Some(name) = &update.name {
                view.name = name.to_string();
            }
            if let Some(email) = &update.email {
                view.email = email.to_string();
            }
            if let Some(phone) = &update.phone {
                view.phone = phone.as_ref().map(ToString::to_string);
            }
            if let Some(address) = &update.address {
                view.address = address.as_ref().map(Address::from);
            }
            if let Some(tags) = &update.tags {
                view.tags = tags.as_slice().iter().map(ToString::to_string).collect();
            }
            Some(stamp(view))
        }
        (Some(view), CustomerEvent::Archived(_)) => Some(stamp(CustomerView {
            archived: true,
            ..view.clone()
        })),
        (None, _) => None,
    }
}

/// The history of a customer stream: each version with the fields it changed.
pub fn history(envelopes: &[EventEnvelope]) -> Result<Vec<HistoryEntry>, DecodeError> {
    let mut entries = Vec::with_capacity(envelopes.len());
    let mut previous: Option<CustomerView> = None;
    for (envelope, event) in decode(envelopes)? {
        let Some(next) = apply(previous.as_ref(), envelope, &event) else {
            continue;
        };
        entries.push(history_entry(previous.as_ref(), &next, envelope));
        previous = Some(next);
    }
    Ok(entries)
}

/// The history entry of `envelope`, which took the customer from `previous` to `next`.
pub fn history_entry(
    previous: Option<&CustomerView>,
    next: &CustomerView,
    envelope: &EventEnvelope,
) -> HistoryEntry {
    HistoryEntry {
        version: envelope.stream_version,
        global_position: envelope.global_position,
        event_id: envelope.event_id,
        event_type: envelope.event_type.clone(),
        at: envelope.recorded_at,
        actor_id: envelope.metadata.actor_id,
        actor_name: envelope.metadata.actor_name.clone(),
        request_id: envelope.metadata.request_id.clone(),
        changes: changes(previous, next),
    }
}

/// The fields whose values differ between two views (all set fields for a new customer).
fn changes(before: Option<&CustomerView>, after: &CustomerView) -> Vec<Change> {
    let fields = |view: Option<&CustomerView>| -> Vec<(&'static str, Value)> {
        let Some(view) = view else {
            return ["name", "email", "phone", "address", "tags", "status"]
                .map(|f| (f, Value::Null))
                .to_vec();
        };
        vec![
            ("name", json!(view.name)),
            ("email", json!(view.email)),
            ("phone", json!(view.phone)),
            ("address", json!(view.address)),
            (
                "tags",
                if view.tags.is_empty() {
                    Value::Null
                } else {
                    json!(view.tags)
                },
            ),
            (
                "status",
                json!(if view.archived { "archived" } else { "active" }),
            ),
        ]
    };
    fields(before)
        .into_iter()
        .zip(fields(Some(after)))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((field, old), (_, new))| Change {
            field: field.to_owned(),
            old,
            new,
        })
        .collect()
}
