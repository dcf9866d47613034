//! Who may do what: permissions from a fixed list, and roles as named sets of them. The
//! built-in roles (`admin`, `member`, `viewer`) are predefined sets no one can change; a
//! tenant may define roles of its own. Every request handler asks for a permission, never
//! for a role by name.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One thing a user may do in their tenant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Permission {
    #[serde(rename = "customers:read")]
    CustomersRead,
    #[serde(rename = "customers:write")]
    CustomersWrite,
    #[serde(rename = "customers:archive")]
    CustomersArchive,
    #[serde(rename = "customers:erase")]
    CustomersErase,
    #[serde(rename = "users:manage")]
    UsersManage,
    #[serde(rename = "roles:manage")]
    RolesManage,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "settings:manage")]
    SettingsManage,
    #[serde(rename = "activities:write")]
    ActivitiesWrite,
    #[serde(rename = "export:run")]
    ExportRun,
}

impl Permission {
    pub const ALL: [Self; 10] = [
        Self::CustomersRead,
        Self::CustomersWrite,
        Self::CustomersArchive,
        Self::CustomersErase,
        Self::UsersManage,
        Self::RolesManage,
        Self::AuditRead,
        Self::SettingsManage,
        Self::ActivitiesWrite,
        Self::ExportRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomersRead => "customers:read",
            Self::CustomersWrite => "customers:write",
            Self::CustomersArchive => "customers:archive",
            Self::CustomersErase => "customers:erase",
            Self::UsersManage => "users:manage",
            Self::RolesManage => "roles:manage",
            Self::AuditRead => "audit:read",
            Self::SettingsManage => "settings:manage",
            Self::ActivitiesWrite => "activities:write",
            Self::ExportRun => "export:run",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions (a bit per permission: cheap to copy and compare per request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u16);

impl Permissions {
    pub const NONE: Self = Self(0);

    pub fn of(permissions: impl IntoIterator<Item = Permission>) -> Self {
        Self(permissions.into_iter().fold(0, |bits, p| bits | p.bit()))
    }

    pub fn all() -> Self {
        Self::of(Permission::ALL)
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// Whether every permission of `other` is also in `self`.
    pub fn covers(self, other: Self) -> bool {
        other.0 & !self.0 == 0
    }

    /// The permissions of `other` that `self` lacks.
    pub fn missing(self, other: Self) -> Vec<Permission> {
        other.iter().filter(|p| !self.contains(*p)).collect()
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

/// A role's name: a built-in one or a tenant's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct RoleName(String);

impl JsonSchema for RoleName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoleName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[a-z][a-z0-9_-]{1,39}$"})
    }
}

impl From<String> for RoleName {
    /// The name as recorded, unchecked: for stored events and rows only.
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<RoleName> for String {
    fn from(value: RoleName) -> Self {
        value.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a role name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRoleName {
    #[error("must be 2 to 40 characters of a-z, 0-9, `_` or `-`, starting with a letter")]
    Shape,
    #[error("`{0}` is a built-in role")]
    BuiltIn(String),
}

impl RoleName {
    pub const ADMIN: &'static str = "admin";
    pub const MEMBER: &'static str = "member";
    pub const VIEWER: &'static str = "viewer";
    /// Platform admins' role: no tenant, no tenant permissions; never a tenant's role.
    pub const PLATFORM_ADMIN: &'static str = "platform_admin";

    /// Any role a user may be given: a built-in one, or a well-formed name of the tenant's.
    pub fn parse(value: &str) -> Result<Self, InvalidRoleName> {
        let value = value.trim();
        let mut chars = value.chars();
        let valid = (2..=40).contains(&value.len())
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid || value == Self::PLATFORM_ADMIN {
            return Err(InvalidRoleName::Shape);
        }
        Ok(Self(value.to_owned()))
    }

    /// A name for a tenant-defined role: well formed and not a built-in's.
    pub fn parse_custom(value: &str) -> Result<Self, InvalidRoleName> {
        let name = Self::parse(value)?;
        if name.builtin_permissions().is_some() {
            return Err(InvalidRoleName::BuiltIn(name.0));
        }
        Ok(name)
    }

    pub fn admin() -> Self {
        Self(Self::ADMIN.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The permissions of a built-in role; `None` for a tenant's own.
    ///
    /// - `admin`: everything a tenant can do.
    /// - `member`: the customers' day-to-day: read, write, archive, activities.
    /// - `viewer`: reads.
    pub fn builtin_permissions(&self) -> Option<Permissions> {
        use Permission::{ActivitiesWrite, CustomersArchive, CustomersRead, CustomersWrite};
        match self.0.as_str() {
            Self::ADMIN => Some(Permissions::all()),
            Self::MEMBER => Some(Permissions::of([
                CustomersRead,
                CustomersWrite,
                CustomersArchive,
                ActivitiesWrite,
            ])),
            Self::VIEWER => Some(Permissions::of([CustomersRead])),
            _ => None,
        }
    }

    pub fn is_builtin(&self) -> bool {
        self.builtin_permissions().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_round_trip_their_names_and_sets_compare() {
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()), Some(permission));
            let json = serde_json::to_string(&permission).unwrap();
            assert_eq!(json, format!("\"{permission}\""));
        }
        let member = RoleName::parse("member")
            .unwrap()
            .builtin_permissions()
            .unwrap();
        let admin = RoleName::admin().builtin_permissions().unwrap();
        assert!(admin.covers(member));
        assert!(!member.covers(admin));
        assert_eq!(
            member.missing(Permissions::of([
                Permission::CustomersRead,
                Permission::AuditRead
            ])),
            vec![Permission::AuditRead]
        );
    }

    #[test]
    fn role_names_are_checked_and_built_ins_reserved() {
        assert!(RoleName::parse("support-agent").is_ok());
        assert_eq!(RoleName::parse("Support"), Err(InvalidRoleName::Shape));
        assert_eq!(
            RoleName::parse("platform_admin"),
            Err(InvalidRoleName::Shape)
        );
        assert_eq!(
            RoleName::parse_custom("viewer"),
            Err(InvalidRoleName::BuiltIn("viewer".to_owned()))
        );
    }
}
