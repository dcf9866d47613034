//! The language Chronicle's events are written in.
//!
//! # Layout
//! - [`ids`]: identifiers every event carries: [`TenantId`], [`StreamId`].
//! - [`envelope`]: the [`EventEnvelope`] around every stored event, and its [`EventMetadata`].
//! - [`event`]: the [`DomainEvent`] and [`EventType`] traits that tie a Rust type to its
//!   stored name and schema version, and decode stored payloads through upcasters.
//! - [`values`]: value types: `parse` holds today's rules for commands; stored events decode
//!   as recorded.
//! - [`tenant`], [`user`], [`customer`]: the event types of each aggregate.
//! - [`aggregate`]: the one list of aggregate types ([`AGGREGATE_TYPES`]); topics, the
//!   relay, the projector's subscriptions and the API's enumerations derive from it.
//! - [`json_schema`]: the JSON Schema of every event type, checked in under `schemas/json/`.
//!
//! Events are facts: once stored they are never rewritten. A type changes by adding a
//! version and an upcaster from the old one (see [`EventType::upcast`]).

pub mod access;
pub mod aggregate;
pub mod customer;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod json_schema;
pub mod tenant;
pub mod user;
pub mod values;

pub use access::{InvalidRoleName, Permission, Permissions, RoleName};
pub use aggregate::{AGGREGATE_NAMES, AGGREGATE_TYPES, AggregateType};
pub use customer::{CustomerArchived, CustomerEvent, CustomerRegistered, CustomerUpdated};
pub use envelope::{EventEnvelope, EventMetadata};
pub use event::{DecodeError, DomainEvent, EventType};
pub use ids::{InvalidId, StreamId, TenantId};
pub use tenant::{
    RoleChanged, RoleDefined, RoleRemoved, TenantActivated, TenantEvent, TenantReactivated,
    TenantRegistered, TenantSignupAbandoned, TenantSuspended,
};
pub use user::{
    UserDeactivated, UserEvent, UserPasswordChanged, UserReactivated, UserRegistered, UserUpdated,
};
pub use values::{
    AddressLine, CountryCode, CustomerName, DisplayName, EmailAddress, InvalidValue, PhoneNumber,
    PostalAddress, Tag, Tags, TenantName, Username,
};
