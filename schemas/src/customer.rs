//! Customers of a tenant. A customer's stream is `customer-<customer id>`.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::event::{EventType, domain_events};
use crate::values::{CustomerName, EmailAddress, PhoneNumber, PostalAddress, Tags};

domain_events! {
    /// What happens to a customer.
    pub enum CustomerEvent for "customer" {
        Registered(CustomerRegistered),
        Updated(CustomerUpdated),
        Archived(CustomerArchived),
    }
}

/// A customer was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerRegistered {
    pub name: CustomerName,
    pub email: EmailAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
    #[serde(default)]
    pub tags: Tags,
}

impl EventType for CustomerRegistered {
    const NAME: &'static str = "CustomerRegistered";
    const VERSION: u32 = 1;
}

/// Some of a customer's fields changed; only the changed ones are present.
///
/// `phone` and `address` can be removed: present with `null` means removed, absent means
/// unchanged. The old values are not repeated here; they are the stream's earlier events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<CustomerName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub phone: Option<Option<PhoneNumber>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<Option<PostalAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

impl CustomerUpdated {
    /// True when the event would change nothing; such an event is never appended.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl EventType for CustomerUpdated {
    const NAME: &'static str = "CustomerUpdated";
    const VERSION: u32 = 1;
}

/// A customer was archived: kept, but hidden from lists by default. Nothing is deleted.
///
/// Version 2 added `reason`. Version 1 events (`{}`) are stored as they were and read
/// through [`EventType::upcast`], which records that no reason was given then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerArchived {
    /// Why, in the archiving user's words.
    pub reason: String,
}

impl CustomerArchived {
    /// The reason given to version 1 events, which had none.
    pub const REASON_BEFORE_V2: &'static str = "not recorded (archived before reasons were kept)";
}

impl EventType for CustomerArchived {
    const NAME: &'static str = "CustomerArchived";
    const VERSION: u32 = 2;

    fn upcast(
        from_version: u32,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, crate::DecodeError> {
        match (from_version, payload) {
            (1, serde_json::Value::Object(mut fields)) => {
                fields.insert("reason".to_owned(), Self::REASON_BEFORE_V2.into());
                Ok(serde_json::Value::Object(fields))
            }
            (schema_version, _) => Err(crate::DecodeError::UnknownVersion {
                event_type: Self::NAME,
                schema_version,
                current: Self::VERSION,
            }),
        }
    }
}

/// Deserializes a field that is present (possibly `null`) as `Some(..)`, so that with
/// `#[serde(default)]` an absent field stays `None`: "unchanged" and "removed" differ.
fn present<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::DomainEvent;

    #[test]
    fn absent_and_null_fields_of_an_update_differ() {
        let update: CustomerUpdated = serde_json::from_value(json!({"phone": null})).unwrap();
        assert_eq!(update.phone, Some(None));
        assert_eq!(update.address, None);
        assert_eq!(
            serde_json::to_value(&update).unwrap(),
            json!({"phone": null})
        );
        assert!(CustomerUpdated::default().is_empty());
        assert!(!update.is_empty());
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let registered = CustomerEvent::from(CustomerRegistered {
            name: CustomerName::parse("Jürgen Müller").unwrap(),
            email: EmailAddress::parse("j.mueller@example.de").unwrap(),
            phone: Some(PhoneNumber::parse("+49 30 1234567").unwrap()),
            address: None,
            tags: Tags::parse(["vip", "berlin"]).unwrap(),
        });
        assert_eq!(registered.event_type(), "CustomerRegistered");
        assert_eq!(registered.schema_version(), 1);
        let decoded = CustomerEvent::decode(
            registered.event_type(),
            registered.schema_version(),
            registered.to_payload(),
        )
        .unwrap();
        assert_eq!(decoded, registered);
    }

    #[test]
    fn unknown_types_versions_and_payloads_are_typed_errors() {
        use crate::event::DecodeError;
        let unknown_type = CustomerEvent::decode("CustomerTeleported", 1, json!({}));
        assert!(matches!(unknown_type, Err(DecodeError::UnknownType { .. })));
        let future_version = CustomerEvent::decode("CustomerArchived", 3, json!({}));
        assert!(matches!(
            future_version,
            Err(DecodeError::UnknownVersion { .. })
        ));
        let bad_payload = CustomerEvent::decode("CustomerRegistered", 1, json!({"name": ""}));
        assert!(matches!(
            bad_payload,
            Err(DecodeError::InvalidPayload { .. })
        ));
    }

    #[test]
    fn archived_events_of_both_versions_decode_through_the_upcaster() {
        let v1 = CustomerEvent::decode("CustomerArchived", 1, json!({})).unwrap();
        assert_eq!(
            v1,
            CustomerEvent::Archived(CustomerArchived {
                reason: CustomerArchived::REASON_BEFORE_V2.to_owned()
            })
        );
        let v2 =
            CustomerEvent::decode("CustomerArchived", 2, json!({"reason": "moved away"})).unwrap();
        assert_eq!(
            v2,
            CustomerEvent::Archived(CustomerArchived {
                reason: "moved away".to_owned()
            })
        );
        assert_eq!(v2.schema_version(), 2);
        assert!(
            CustomerEvent::decode("CustomerArchived", 2, json!({})).is_err(),
            "v2 requires a reason"
        );
        assert!(CustomerEvent::decode("CustomerArchived", 0, json!({})).is_err());
    }
}
