//! The customer aggregate: pure and synchronous. `decide` turns the current state and a
//! command into events (or a domain error); `apply` folds an event into the state and
//! holds no business logic. Nothing here touches a database.

use schemas::{
    CustomerArchived, CustomerEvent, CustomerName, CustomerRegistered, CustomerUpdated,
    EmailAddress, PhoneNumber, PostalAddress, Tags,
};

/// A customer's fields: what a registration sets and an update replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDetails {
    pub name: CustomerName,
    pub email: EmailAddress,
    pub phone: Option<PhoneNumber>,
    pub address: Option<PostalAddress>,
    pub tags: Tags,
}

/// The state rebuilt from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub details: CustomerDetails,
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerCommand {
    Register(CustomerDetails),
    /// Make the customer's details these (computed from a merge patch by the caller).
    Update(CustomerDetails),
    Archive {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("the customer already exists")]
    AlreadyRegistered,
    #[error("no such customer")]
    NotFound,
    #[error("the customer is archived and cannot change")]
    Archived,
}

/// What happens when `command` meets `state` (`None`: the stream is empty).
pub fn decide(
    state: Option<&Customer>,
    command: CustomerCommand,
) -> Result<Vec<CustomerEvent>, CustomerError> {
    match (state, command) {
        (None, CustomerCommand::Register(details)) => Ok(vec![
            CustomerRegistered {
                name: details.name,
                email: details.email,
                phone: details.phone,
                address: details.address,
                tags: details.tags,
            }
            .into(),
        ]),
        (Some(_), CustomerCommand::Register(_)) => Err(CustomerError::AlreadyRegistered),
        (None, _) => Err(CustomerError::NotFound),
        (Some(customer), CustomerCommand::Update(_)) if customer.archived => {
            Err(CustomerError::Archived)
        }
        (Some(customer), CustomerCommand::Update(wanted)) => {
            let current = &customer.details;
            let update = CustomerUpdated {
                name: (current.name != wanted.name).then(|| wanted.name.clone()),
                email: (current.email != wanted.email).then(|| wanted.email.clone()),
                phone: (current.phone != wanted.phone).then(|| wanted.phone.clone()),
                address: (current.address != wanted.address).then(|| wanted.address.clone()),
                tags: (current.tags != wanted.tags).then(|| wanted.tags.clone()),
            };
            // Nothing changed: nothing happened, and nothing is recorded.
            Ok(if update.is_empty() {
                Vec::new()
            } else {
                vec![update.into()]
            })
        }
        (Some(customer), CustomerCommand::Archive { .. }) if customer.archived => Ok(Vec::new()),
        (Some(_), CustomerCommand::Archive { reason }) => {
            Ok(vec![CustomerArchived { reason }.into()])
        }
    }
}

impl crate::commands::Aggregate for Customer {
    type Event = CustomerEvent;

    fn apply(state: Option<Self>, event: &CustomerEvent) -> Option<Self> {
        apply(state, event)
    }
}

/// Folds one event into the state.
pub fn apply(state: Option<Customer>, event: &CustomerEvent) -> Option<Customer> {
    match (state, event) {
        (_, CustomerEvent::Registered(registered)) => Some(Customer {
            details: CustomerDetails {
                name: registered.name.clone(),
                email: registered.email.clone(),
                phone: registered.phone.clone(),
                address: registered.address.clone(),
                tags: registered.tags.clone(),
            },
            archived: false,
        }),
        (Some(mut customer), CustomerEvent::Updated(update)) => {
            let details = &mut customer.details;
            if let Some(name) = &update.name {
                details.name = name.clone();
            }
            if let Some(email) = &update.email {
                details.email = email.clone();
            }
            if let Some(phone) = &update.phone {
                details.phone = phone.clone();
            }
            if let Some(address) = &update.address {
                details.address = address.clone();
            }
            if let Some(tags) = &update.tags {
                details.tags = tags.clone();
            }
            Some(customer)
        }
        (Some(customer), CustomerEvent::Archived(_)) => Some(Customer {
            archived: true,
            ..customer
        }),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use schemas::{CountryCode, PostalAddress, Tags};

    use super::*;

    fn details(name: &str) -> CustomerDetails {
        CustomerDetails {
            name: CustomerName::parse(name).unwrap(),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            phone: None,
            address: None,
            tags: Tags::default(),
        }
    }

    fn given(events: &[CustomerEvent]) -> Option<Customer> {
        events.iter().fold(None, apply)
    }

    fn registered(name: &str) -> CustomerEvent {
        decide(None, CustomerCommand::Register(details(name)))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn registering_a_new_customer_records_it() {
        let events = decide(
            given(&[]).as_ref(),
            CustomerCommand::Register(details("Ada")),
        )
        .unwrap();
        assert!(matches!(&events[..], [CustomerEvent::Registered(r)] if r.name.as_str() == "Ada"));
    }

    #[test]
    fn registering_twice_is_refused() {
        let state = given(&[registered("Ada")]);
        assert_eq!(
            decide(state.as_ref(), CustomerCommand::Register(details("Ada"))),
            Err(CustomerError::AlreadyRegistered)
        );
    }

    #[test]
    fn an_update_records_only_what_changed() {
        let state = given(&[registered("Ada")]);
        let mut wanted = details("Ada Lovelace");
        wanted.address = Some(PostalAddress {
            street: schemas::values::AddressLine::parse("1 Analytical Way").unwrap(),
            city: schemas::values::AddressLine::parse("London").unwrap(),
            postal_code: schemas::values::AddressLine::parse("N1").unwrap(),
            country: CountryCode::parse("GB").unwrap(),
        });
        let events = decide(state.as_ref(), CustomerCommand::Update(wanted.clone())).unwrap();
        let [CustomerEvent::Updated(update)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(
            update.name.as_ref().map(CustomerName::as_str),
            Some("Ada Lovelace")
        );
        assert_eq!(update.address, Some(wanted.address.clone()));
        assert_eq!(
            (
                update.email.as_ref(),
                update.phone.as_ref(),
                update.tags.as_ref()
            ),
            (None, None, None)
        );

        let after = events.iter().fold(state, apply).unwrap();
        assert_eq!(after.details, wanted);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let state = given(&[registered("Ada")]);
        assert_eq!(
            decide(state.as_ref(), CustomerCommand::Update(details("Ada"))),
            Ok(vec![])
        );
    }

    #[test]
    fn removing_an_optional_field_is_a_change() {
        let mut with_phone = details("Ada");
        with_phone.phone = Some(PhoneNumber::parse("+441234567890").unwrap());
        let state = given(&[decide(None, CustomerCommand::Register(with_phone))
            .unwrap()
            .remove(0)]);
        let events = decide(state.as_ref(), CustomerCommand::Update(details("Ada"))).unwrap();
        let [CustomerEvent::Updated(update)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(update.phone, Some(None));
    }

    #[test]
    fn unknown_customers_cannot_change_or_be_archived() {
        assert_eq!(
            decide(None, CustomerCommand::Update(details("Ada"))),
            Err(CustomerError::NotFound)
        );
        assert_eq!(
            decide(
                None,
                CustomerCommand::Archive {
                    reason: "moved away".to_owned()
                }
            ),
            Err(CustomerError::NotFound)
        );
    }

    #[test]
    fn archiving_records_once_and_freezes_the_customer() {
        let state = given(&[registered("Ada")]);
        let events = decide(
            state.as_ref(),
            CustomerCommand::Archive {
                reason: "moved away".to_owned(),
            },
        )
        .unwrap();
        assert!(matches!(&events[..], [CustomerEvent::Archived(_)]));
        let archived = events.iter().fold(state, apply);
        assert!(archived.as_ref().unwrap().archived);
        assert_eq!(
            decide(
                archived.as_ref(),
                CustomerCommand::Archive {
                    reason: "moved away".to_owned()
                }
            ),
            Ok(vec![]),
            "archiving again is a no-op"
        );
        assert_eq!(
            decide(
                archived.as_ref(),
                CustomerCommand::Update(details("Someone Else"))
            ),
            Err(CustomerError::Archived)
        );
    }
}
