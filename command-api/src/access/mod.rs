//! Who may do what, held in memory on every instance so that no request needs a database
//! call to be authorised, and reloaded on NOTIFY (see `crate::sync`) so that a change made
//! on one instance applies on all within a second:
//! - [`directory`]: every tenant user's role, whether they are active, and since when
//!   their sessions count (a password change ends the older ones);
//! - [`roles`]: each tenant's own roles and their permissions (the built-in roles are
//!   fixed sets, in `schemas::access`);
//! - [`locked`]: the same answers read inside a command's transaction, the rows locked,
//!   for the rules that decide what may be granted (never from memory).

pub mod directory;
pub mod locked;
pub mod roles;

pub use directory::{UserAccess, UserDirectory};
pub use roles::RoleRegistry;
