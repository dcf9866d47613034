//! A tenant's own roles: named sets of permissions from the fixed list, defined, changed
//! and removed by whoever holds `roles:manage`, never with a permission they lack. The
//! built-in roles (`admin`, `member`, `viewer`) are listed beside them and cannot be
//! changed. Each change is an event on the tenant's stream (the audit log shows it) and a
//! row of the `roles` table, which every instance holds in memory (`crate::access`): a
//! change applies to every request within a second, tokens already issued included.

pub mod aggregate;
pub mod handlers;

pub use handlers::router;
