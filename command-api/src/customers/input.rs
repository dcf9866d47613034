//! What clients send about customers, and how it becomes [`CustomerDetails`]: every field
//! validated by its domain type, every error reported with its field at once.

use schemas::{
    AddressLine, CountryCode, CustomerName, EmailAddress, PhoneNumber, PostalAddress, Tags,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::aggregate::CustomerDetails;
use crate::openapi::fields;
use crate::problem::{ApiError, FieldError};

/// `POST /v1/customers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    /// 1 to 200 characters.
    #[schema(schema_with = fields::customer_name)]
    pub name: String,
    #[schema(schema_with = fields::email)]
    pub email: String,
    /// International format: `+` and 8 to 15 digits (spaces, dashes, dots and parentheses
    /// between them allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::phone_or_null)]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressInput>,
    /// At most 20, each 1 to 40 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = fields::tags_or_null)]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    #[schema(schema_with = fields::address_line)]
    pub street: String,
    #[schema(schema_with = fields::address_line)]
    pub city: String,
    #[schema(schema_with = fields::address_line)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(schema_with = fields::country)]
    pub country: String,
}

/// `PATCH /v1/customers/{id}`: a JSON merge patch (RFC 7396) of the fields of
/// `POST /v1/customers`: the fields it names are replaced, `null` removes an optional one,
/// `address` merges part by part.
// The document's only: the handler applies the patch as sent, with `merge_patch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    #[schema(schema_with = fields::customer_name)]
    pub name: Option<String>,
    #[schema(schema_with = fields::email)]
    pub email: Option<String>,
    #[schema(schema_with = fields::phone_or_null)]
    pub phone: Option<String>,
    /// Merged part by part into the current address; a customer without one needs every
    /// part.
    pub address: Option<AddressPatch>,
    #[schema(schema_with = fields::tags_or_null)]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressPatch {
    #[schema(schema_with = fields::address_line)]
    pub street: Option<String>,
    #[schema(schema_with = fields::address_line)]
    pub city: Option<String>,
    #[schema(schema_with = fields::address_line)]
    pub postal_code: Option<String>,
    #[schema(schema_with = fields::country)]
    pub country: Option<String>,
}

impl CustomerInput {
    /// The validated details, or every invalid field.
    pub fn validate(self) -> Result<CustomerDetails, ApiError> {
        let mut errors = Vec::new();
        let name = checked(&mut errors, "name", CustomerName::parse(&self.name));
        let email = checked(&mut errors, "email", EmailAddress::parse(&self.email));
        let phone = self
            .phone
            .map(|phone| checked(&mut errors, "phone", PhoneNumber::parse(&phone)));
        let address = self.address.map(|a| {
            let street = checked(&mut errors, "address.street", AddressLine::parse(&a.street));
            let city = checked(&mut errors, "address.city", AddressLine::parse(&a.city));
            let postal_code = checked(
                &mut errors,
                "address.postal_code",
                AddressLine::parse(&a.postal_code),
            );
            let country = checked(
                &mut errors,
                "address.country",
                CountryCode::parse(&a.country),
            );
            Some(PostalAddress {
                street: street?,
                city: city?,
                postal_code: postal_code?,
                country: country?,
            })
        });
        let tags = checked(
            &mut errors,
            "tags",
            Tags::parse(self.tags.unwrap_or_default()),
        );
        match (name, email, phone, address, tags) {
            (Some(name), Some(email), phone, address, Some(tags)) if errors.is_empty() => {
                Ok(CustomerDetails {
                    name,
                    email,
                    phone: phone.flatten(),
                    address: address.flatten(),
                    tags,
                })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }

    pub fn from_details(details: &CustomerDetails) -> Self {
        Self {
            name: details.name.to_string(),
            email: details.email.to_string(),
            phone: details.phone.as_ref().map(ToString::to_string),
            address: details.address.as_ref().map(|a| AddressInput {
                street: a.street.to_string(),
                city: a.city.to_string(),
                postal_code: a.postal_code.to_string(),
                country: a.country.to_string(),
            }),
            tags: Some(
                details
                    .tags
                    .as_slice()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        }
    }
}

/// The value, or `None` with the field's error noted.
fn checked<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    result: Result<T, schemas::InvalidValue>,
) -> Option<T> {
    result
        .map_err(|error| errors.push(FieldError::new(field, error)))
        .ok()
}

const CUSTOMER_FIELDS: [&str; 5] = ["name", "email", "phone", "address", "tags"];
const ADDRESS_FIELDS: [&str; 4] = ["street", "city", "postal_code", "country"];

/// Applies a JSON merge patch (RFC 7396) to `current`, returning the details wanted.
/// Unknown fields are refused by name; `null` removes a field (required ones then fail
/// validation); `address` merges field by field.
///
/// Only the fields the patch names are validated: the others keep their recorded values,
/// which were valid by the rules of their day and need not pass today's, so a customer
/// recorded under older rules can still be changed.
pub fn merge_patch(current: &CustomerDetails, patch: &Value) -> Result<CustomerDetails, ApiError> {
    let Value::Object(patch_fields) = patch else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            "a merge patch must be a JSON object",
        )]));
    };
    let mut unknown = unknown_fields(patch_fields, &CUSTOMER_FIELDS, "");
    let address_patch = match patch_fields.get("address") {
        Some(Value::Object(address)) => {
            unknown.extend(unknown_fields(address, &ADDRESS_FIELDS, "address."));
            Some(address)
        }
        _ => None,
    };
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    let mut document =
        serde_json::to_value(CustomerInput::from_details(current)).map_err(ApiError::internal)?;
    json_patch::merge(&mut document, patch);
    // The merged document must have the shape of a customer (a partial address on a
    // customer without one misses parts; each is named).
    let wanted: CustomerInput =
        crate::extract::parse_json(&serde_json::to_vec(&document).map_err(ApiError::internal)?)?;

    let patched = |field: &str| patch_fields.contains_key(field);
    let mut errors = Vec::new();
    let name = if patched("name") {
        checked(&mut errors, "name", CustomerName::parse(&wanted.name))
    } else {
        Some(current.name.clone())
    };
    let email = if patched("email") {
        checked(&mut errors, "email", EmailAddress::parse(&wanted.email))
    } else {
        Some(current.email.clone())
    };
    let phone = if patched("phone") {
        wanted
            .phone
            .map(|phone| checked(&mut errors, "phone", PhoneNumber::parse(&phone)))
    } else {
        current.phone.clone().map(Some)
    };
    let address = match (address_patch, wanted.address) {
        // Unchanged, or removed with `null`.
        (None, wanted) if patched("address") => wanted.and(None),
        (None, _) => current.address.clone().map(Some),
        (Some(parts), Some(merged)) => {
            let kept = current.address.as_ref();
            let part = |errors: &mut Vec<FieldError>,
                        field: &str,
                        value: &str,
                        old: Option<&AddressLine>| {
                match old {
                    Some(old) if !parts.contains_key(field) => Some(old.clone()),
                    _ => checked(
                        errors,
                        &format!("address.{field}"),
                        AddressLine::parse(value),
                    ),
                }
            };
            let street = part(
                &mut errors,
                "street",
                &merged.street,
                kept.map(|a| &a.street),
            );
            let city = part(&mut errors, "city", &merged.city, kept.map(|a| &a.city));
            let postal_code = part(
                &mut errors,
                "postal_code",
                &merged.postal_code,
                kept.map(|a| &a.postal_code),
            );
            let country = match kept {
                Some(old) if !parts.contains_key("country") => Some(old.country.clone()),
                _ => checked(
                    &mut errors,
                    "address.country",
                    CountryCode::parse(&merged.country),
                ),
            };
            Some(street.zip(city).zip(postal_code).zip(country).map(
                |(((street, city), postal_code), country)| PostalAddress {
                    street,
                    city,
                    postal_code,
                    country,
                },
            ))
        }
        (Some(_), None) => None,
    };
    let tags = if patched("tags") {
        checked(
            &mut errors,
            "tags",
            Tags::parse(wanted.tags.unwrap_or_default()),
        )
    } else {
        Some(current.tags.clone())
    };
    match (name, email, phone, address, tags) {
        (Some(name), Some(email), phone, address, Some(tags)) if errors.is_empty() => {
            Ok(CustomerDetails {
                name,
                email,
                phone: phone.flatten(),
                address: address.flatten(),
                tags,
            })
        }
        _ => Err(ApiError::Validation(errors)),
    }
}

fn unknown_fields(fields: &Map<String, Value>, known: &[&str], prefix: &str) -> Vec<FieldError> {
    fields
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .map(|key| FieldError::new(format!("{prefix}{key}"), "unknown field"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ada() -> CustomerDetails {
        serde_json::from_value::<CustomerInput>(json!({
            "name": "Ada", "email": "ada@example.com", "phone": "+44 20 1234 5678",
            "address": {"street": "1 Way", "city": "London", "postal_code": "N1", "country": "GB"},
            "tags": ["vip"]
        }))
        .unwrap()
        .validate()
        .unwrap()
    }

    fn errors(result: Result<CustomerDetails, ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let input: CustomerInput = serde_json::from_value(json!({
            "name": " ", "email": "nope", "phone": "12", "tags": ["ok", ""],
            "address": {"street": "", "city": "x", "postal_code": "1", "country": "XX"}
        }))
        .unwrap();
        assert_eq!(
            errors(input.validate()),
            vec![
                "name",
                "email",
                "phone",
                "address.street",
                "address.country",
                "tags"
            ]
        );
    }

    #[test]
    fn a_merge_patch_changes_named_fields_and_merges_the_address() {
        let patched = merge_patch(
            &ada(),
            &json!({"name": "Ada L.", "address": {"city": "Cambridge"}}),
        )
        .unwrap();
        assert_eq!(patched.name.as_str(), "Ada L.");
        assert_eq!(patched.address.as_ref().unwrap().city.as_str(), "Cambridge");
        assert_eq!(patched.address.as_ref().unwrap().street.as_str(), "1 Way");
        assert_eq!(patched.email, ada().email);
    }

    #[test]
    fn null_removes_optional_fields_and_fails_required_ones() {
        let patched = merge_patch(&ada(), &json!({"phone": null, "address": null})).unwrap();
        assert_eq!((patched.phone, patched.address), (None, None));
        assert_eq!(
            errors(merge_patch(&ada(), &json!({"name": null}))),
            vec!["name"]
        );
    }

    #[test]
    fn fields_the_patch_does_not_name_are_not_validated_again() {
        // Recorded under older rules: today a name may not be this long.
        let mut recorded = ada();
        recorded.name = serde_json::from_value(json!("N".repeat(300))).unwrap();
        let patched = merge_patch(&recorded, &json!({"phone": "+49 30 1234567"})).unwrap();
        assert_eq!(patched.name, recorded.name, "kept as recorded");
        assert_eq!(patched.phone.unwrap().as_str(), "+49301234567");
        assert_eq!(
            errors(merge_patch(&recorded, &json!({"name": "M".repeat(300)}))),
            vec!["name"],
            "what the patch names is checked by today's rules"
        );
        let moved = merge_patch(&recorded, &json!({"address": {"city": "Bonn"}})).unwrap();
        assert_eq!(moved.address.unwrap().city.as_str(), "Bonn");
    }

    #[test]
    fn unknown_fields_are_named() {
        assert_eq!(
            errors(merge_patch(
                &ada(),
                &json!({"nickname": "x", "address": {"planet": "Mars"}})
            )),
            vec!["nickname", "address.planet"]
        );
    }
}
