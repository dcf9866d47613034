//! What clients send about users, and its validation: every field checked, every error
//! named by its field at once.

use schemas::{DisplayName, Role, Username};
use serde::Deserialize;
use utoipa::ToSchema;

use super::aggregate::parse_role;
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
    /// `admin`, `member` or `viewer`; default `member`.
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
    pub role: Role,
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
        let role = parse_role(&self.role);
        if role.is_none() {
            errors.push(FieldError::new(
                format!("{prefix}role"),
                "must be admin, member or viewer",
            ));
        }
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
