//! Tenants: the aggregate, the registry every request consults, and the platform admin's
//! endpoints.

pub mod aggregate;
pub mod handlers;
pub mod host;
pub mod registry;
pub mod signup;

pub use registry::{Tenant, TenantRegistry, TenantStatus};
