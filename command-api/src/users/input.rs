//! What clients send about users, and its validation: every field checked, every error
//! named by its field at once.

use schemas::{DisplayName, RoleName, Username};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::password;
use crate::openapi::fields;
use crate::problem::FieldError;

/// `POST /v1/users`, and the admin of `POST /v1/tenants`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// 3 to 64 characters of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit;
    /// case-insensitive (kept lowercase).
    #[schema(schema_with = fields::username)]
    pub username: String,
    /// 12 to 128 characters.
    #[schema(schema_with = fields::password)]
    pub password: String,
    /// 1 to 100 characters.
    #[schema(schema_with = fields::display_name)]
    pub display_name: String,
    /// A built-in role (`admin`, `member`, `viewer`) or one of the tenant's own; default
    /// `member`.
    #[serde(default = "default_role")]
    #[schema(schema_with = fields::tenant_role)]
    pub role: String,
}

fn default_role() -> String {
    "member".to_owned()
}

/// A user's validated fields.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub password: String,
    pub display_name: DisplayName,
    pub role: RoleName,
}

impl UserInput {
    /// Validates every field; `prefix` names the fields in errors (e.g. `admin.`).
    pub fn validate(self, prefix: &str) -> Result<NewUser, Vec<FieldError>> {
        let mut errors = Vec::new();
        let username = Username::parse(&self.username)
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}username"), e)))
            .ok();
        if let Err(reason) = password::check_strength(&self.password) {
            errors.push(FieldError::new(format!("{prefix}password"), reason));
        }
        let display_name = DisplayName::parse(&self.display_name)
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}display_name"), e)))
            .ok();
        let role = RoleName::parse(&self.role)
            .map_err(|e| errors.push(FieldError::new(format!("{prefix}role"), e)))
            .ok();
        match (username, display_name, role) {
            (Some(username), Some(display_name), Some(role)) if errors.is_empty() => Ok(NewUser {
                username,
                password: self.password,
                display_name,
                role,
            }),
            _ => Err(errors),
        }
    }
}

/// `PATCH /v1/users/{id}`: what changes; absent fields stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// 1 to 100 characters.
    #[serde(default)]
    #[schema(schema_with = fields::optional_display_name)]
    pub display_name: Option<String>,
    /// A built-in role or one of the tenant's own.
    #[serde(default)]
    #[schema(schema_with = fields::optional_tenant_role)]
    pub role: Option<String>,
}

/// A patch's validated fields.
#[derive(Debug, Clone)]
pub struct UserChanges {
    pub display_name: Option<DisplayName>,
    pub role: Option<RoleName>,
}

impl UserPatch {
    pub fn validate(self) -> Result<UserChanges, Vec<FieldError>> {
        let mut errors = Vec::new();
        let display_name = self.display_name.and_then(|name| {
            DisplayName::parse(&name)
                .map_err(|e| errors.push(FieldError::new("display_name", e)))
                .ok()
        });
        let role = self.role.and_then(|role| {
            RoleName::parse(&role)
                .map_err(|e| errors.push(FieldError::new("role", e)))
                .ok()
        });
        if errors.is_empty() {
            Ok(UserChanges { display_name, role })
        } else {
            Err(errors)
        }
    }
}

/// `POST /v1/users/{id}/password`: an admin's reset.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// 12 to 128 characters.
    #[schema(schema_with = fields::password)]
    pub new_password: String,
}
