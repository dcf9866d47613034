//! Value types. A command builds them with `parse`, which holds today's rules (strings are
//! trimmed; lengths count characters, not bytes), so everything Chronicle records now is
//! valid by those rules.
//!
//! Deserializing is lenient on purpose: it is how stored events are read, and stored events
//! are facts. An event recorded under yesterday's rules (a longer name, a country code since
//! withdrawn) must still decode, or tightening a rule would make history unreadable. So
//! serde takes the value as recorded, and only the shape (a string, a list) is checked;
//! input from clients never deserializes into these types directly, it goes through
//! `parse`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a value was refused; the caller knows which field it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("must not contain bidirectional-control or zero-width characters")]
    InvisibleCharacters,
    #[error("is not a valid email address")]
    Email,
    #[error("must be an international phone number: `+` and 8 to 15 digits")]
    Phone,
    #[error("must be an ISO 3166-1 alpha-2 country code such as `DE`")]
    Country,
    #[error(
        "must be 3 to 64 characters of a-z, 0-9, `.`, `_` or `-`, starting with a letter or digit"
    )]
    Username,
    #[error("must hold at most {max} tags")]
    TooManyTags { max: usize },
}

/// A trimmed, non-empty, bounded, printable string: the shape every free-text field shares
/// (names, address lines, tags, an archive's reason).
pub fn bounded_text(value: &str, max: usize) -> Result<String, InvalidValue> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if value.chars().count() > max {
        return Err(InvalidValue::TooLong { max });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidValue::ControlCharacters);
    }
    if has_invisible_characters(value) {
        return Err(InvalidValue::InvisibleCharacters);
    }
    Ok(value.to_owned())
}

/// Characters that change how text around them is shown without showing themselves: bidi
/// embeddings, overrides, isolates and marks (which can make `Alice\u{202E}ecilA` read as
/// another name), and zero-width spaces, joiners and the BOM (which make two names that
/// look the same compare different).
///
/// The zero-width (non-)joiner is also part of writing: Persian, the Indic scripts and
/// emoji sequences need it between two characters of their own. It is accepted there, and
/// only there: never at either end, nor beside ASCII, where it can only hide.
fn has_invisible_characters(value: &str) -> bool {
    let chars: Vec<char> = value.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| match c {
        '\u{200C}' | '\u{200D}' => {
            let shapes_text = |neighbour: Option<&char>| {
                neighbour.is_some_and(|n| !n.is_ascii() && !n.is_whitespace())
            };
            !(i > 0 && shapes_text(chars.get(i - 1)) && shapes_text(chars.get(i + 1)))
        }
        '\u{061C}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{180E}'
        | '\u{200B}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}' => true,
        _ => false,
    })
}

/// Implements the conversions every string value type shares around its own `parse`:
/// `From<String>` is the lenient way in, for stored events (see the module documentation).
///
/// The JSON Schema is written out by hand: schemars derives the schema of the serde
/// `from` source type (a bare string), which would drop the constraints it is written with.
macro_rules! string_value {
    ($name:ident, $schema:tt) => {
        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            /// The value as recorded, unchecked: for stored events only.
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A customer's name: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct CustomerName(String);
string_value!(CustomerName, {"type": "string", "minLength": 1, "maxLength": 200});

impl CustomerName {
    pub const MAX_CHARS: usize = 200;
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        bounded_text(value, Self::MAX_CHARS).map(Self)
    }
}

/// A tenant's display name: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct TenantName(String);
string_value!(TenantName, {"type": "string", "minLength": 1, "maxLength": 200});

impl TenantName {
    pub const MAX_CHARS: usize = 200;
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        bounded_text(value, Self::MAX_CHARS).map(Self)
    }
}

/// A user's display name: 1 to 100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct DisplayName(String);
string_value!(DisplayName, {"type": "string", "minLength": 1, "maxLength": 100});

impl DisplayName {
    pub const MAX_CHARS: usize = 100;
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        bounded_text(value, Self::MAX_CHARS).map(Self)
    }
}

/// A login name, unique within its tenant: lowercase, so `Alice` and `alice` are one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Username(String);
string_value!(Username, {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{2,63}$"});

impl Username {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim().to_lowercase();
        let valid = (3..=64).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if valid {
            Ok(Self(value))
        } else {
            Err(InvalidValue::Username)
        }
    }
}

/// An email address: `local@domain`, the domain lowercased (it is case-insensitive; the
/// local part is not, by the RFC, so it is kept as given).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct EmailAddress(String);
string_value!(EmailAddress, {"type": "string", "format": "email", "maxLength": 254});

impl EmailAddress {
    pub const MAX_CHARS: usize = 254;

    /// Accepts the dot-atom form of RFC 5321 addresses with a DNS domain: what people
    /// actually type. Quoted local parts and IP-literal domains are refused.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim();
        if value.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if value.len() > Self::MAX_CHARS {
            return Err(InvalidValue::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let (local, domain) = value.rsplit_once('@').ok_or(InvalidValue::Email)?;
        if !is_local_part(local) || !is_domain(domain) {
            return Err(InvalidValue::Email);
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }
}

fn is_local_part(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || SPECIALS.contains(c))
}

fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    domain.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok
}

/// A phone number in E.164 form, stored normalized: `+` then 8 to 15 digits. Spaces,
/// dashes, dots and parentheses people type between the digits are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct PhoneNumber(String);
string_value!(PhoneNumber, {"type": "string", "pattern": "^\\+[1-9][0-9]{7,14}$"});

impl PhoneNumber {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim();
        if value.is_empty() {
            return Err(InvalidValue::Empty);
        }
        let digits_part = value.strip_prefix('+').ok_or(InvalidValue::Phone)?;
        let mut digits = String::with_capacity(16);
        for c in digits_part.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(InvalidValue::Phone),
            }
        }
        let valid = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
        if valid {
            Ok(Self(format!("+{digits}")))
        } else {
            Err(InvalidValue::Phone)
        }
    }
}

/// An ISO 3166-1 alpha-2 country code, uppercase; only officially assigned codes (when
/// parsed: a stored code stays readable after it is withdrawn).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct CountryCode(String);

impl JsonSchema for CountryCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountryCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<&str> = ISO_3166_ALPHA2.split(' ').collect();
        schemars::json_schema!({"type": "string", "enum": codes})
    }
}

impl CountryCode {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let code = value.trim().to_ascii_uppercase();
        if code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|assigned| assigned == code) {
            Ok(Self(code))
        } else {
            Err(InvalidValue::Country)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every code `parse` accepts (in uppercase), e.g. for an API's schema.
    pub fn assigned() -> impl Iterator<Item = &'static str> {
        ISO_3166_ALPHA2.split(' ')
    }
}

impl From<String> for CountryCode {
    /// The code as recorded, unchecked: for stored events only.
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<CountryCode> for String {
    fn from(value: CountryCode) -> Self {
        value.0
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The officially assigned ISO 3166-1 alpha-2 codes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF \
BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW \
CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM \
GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH \
KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP \
MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN \
PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE \
YT ZA ZM ZW";

/// A postal address; every part is required when an address is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct PostalAddress {
    pub street: AddressLine,
    pub city: AddressLine,
    pub postal_code: AddressLine,
    pub country: CountryCode,
}

/// One line of a postal address: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct AddressLine(String);
string_value!(AddressLine, {"type": "string", "minLength": 1, "maxLength": 200});

impl AddressLine {
    pub const MAX_CHARS: usize = 200;
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        bounded_text(value, Self::MAX_CHARS).map(Self)
    }
}

/// A label on a customer: 1 to 40 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Tag(String);
string_value!(Tag, {"type": "string", "minLength": 1, "maxLength": 40});

impl Tag {
    pub const MAX_CHARS: usize = 40;
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        bounded_text(value, Self::MAX_CHARS).map(Self)
    }
}

/// A customer's tags: a set of at most 20, kept in the order first given (when parsed; as
/// recorded when read from an event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Tag>", into = "Vec<Tag>")]
pub struct Tags(Vec<Tag>);

impl JsonSchema for Tags {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Tags".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let tag = generator.subschema_for::<Tag>();
        schemars::json_schema!({"type": "array", "items": tag, "maxItems": Tags::MAX, "uniqueItems": true})
    }
}

impl Tags {
    pub const MAX: usize = 20;

    pub fn parse<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Result<Self, InvalidValue> {
        let tags = values
            .into_iter()
            .map(|value| Tag::parse(value.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unique: Vec<Tag> = Vec::with_capacity(tags.len());
        for tag in tags {
            if !unique.contains(&tag) {
                unique.push(tag);
            }
        }
        if unique.len() > Self::MAX {
            return Err(InvalidValue::TooManyTags { max: Self::MAX });
        }
        Ok(Self(unique))
    }

    pub fn as_slice(&self) -> &[Tag] {
        &self.0
    }
}

impl From<Vec<Tag>> for Tags {
    /// The tags as recorded, unchecked: for stored events only.
    fn from(tags: Vec<Tag>) -> Self {
        Self(tags)
    }
}

impl From<Tags> for Vec<Tag> {
    fn from(tags: Tags) -> Self {
        tags.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(
            CustomerName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert_eq!(CustomerName::parse("   "), Err(InvalidValue::Empty));
        assert!(
            CustomerName::parse(&"ü".repeat(200)).is_ok(),
            "200 two-byte characters fit"
        );
        assert_eq!(
            CustomerName::parse(&"a".repeat(201)),
            Err(InvalidValue::TooLong { max: 200 })
        );
        assert_eq!(
            CustomerName::parse("a\u{0}b"),
            Err(InvalidValue::ControlCharacters)
        );
    }

    #[test]
    fn names_refuse_bidi_controls_and_zero_width_characters() {
        for spoof in [
            "Alice\u{202E}ecilA",   // right-to-left override
            "Ad\u{2067}a",          // right-to-left isolate
            "Ada\u{200F}",          // right-to-left mark
            "A\u{200B}da",          // zero-width space
            "\u{FEFF}Ada",          // byte order mark
            "Ada\u{200D}",          // a joiner at the end
            "A\u{200C}da",          // a non-joiner between ASCII letters
            "Ada \u{2060}Lovelace", // word joiner
        ] {
            assert_eq!(
                CustomerName::parse(spoof),
                Err(InvalidValue::InvisibleCharacters),
                "{spoof:?}"
            );
        }
        for written in [
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}", // Persian "می‌خواهم"
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",                      // a family emoji
            "Zoë Ångström",
        ] {
            assert!(CustomerName::parse(written).is_ok(), "{written:?}");
        }
        assert_eq!(
            Tag::parse("vip\u{202D}"),
            Err(InvalidValue::InvisibleCharacters)
        );
    }

    #[test]
    fn emails_accept_what_people_type_and_refuse_the_rest() {
        assert_eq!(
            EmailAddress::parse(" Ada.L+news@Example.COM ")
                .unwrap()
                .as_str(),
            "Ada.L+news@example.com"
        );
        for valid in [
            "a@b.io",
            "first.last@sub.domain.co.uk",
            "x_y-z@host-name.org",
        ] {
            assert!(EmailAddress::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@x.com",
            ".a@x.com",
            "a@-x.com",
            "a@x.c",
            "a b@x.com",
            "a@x..com",
            "a@x.123",
        ] {
            assert_eq!(
                EmailAddress::parse(invalid),
                Err(InvalidValue::Email),
                "{invalid}"
            );
        }
        assert_eq!(EmailAddress::parse(""), Err(InvalidValue::Empty));
    }

    #[test]
    fn phones_are_normalized_to_e164() {
        assert_eq!(
            PhoneNumber::parse("+49 (30) 123-45.67").unwrap().as_str(),
            "+49301234567"
        );
        for invalid in [
            "030 1234567",
            "+0301234567",
            "+49 30 12a4567",
            "+1234567",
            "+1234567890123456",
        ] {
            assert_eq!(
                PhoneNumber::parse(invalid),
                Err(InvalidValue::Phone),
                "{invalid}"
            );
        }
    }

    #[test]
    fn countries_are_assigned_iso_codes() {
        assert_eq!(ISO_3166_ALPHA2.split(' ').count(), 249);
        assert_eq!(CountryCode::parse("de").unwrap().as_str(), "DE");
        for invalid in ["XX", "D", "DEU", "", "ZZ"] {
            assert_eq!(
                CountryCode::parse(invalid),
                Err(InvalidValue::Country),
                "{invalid}"
            );
        }
    }

    #[test]
    fn usernames_are_lowercase_slugs() {
        assert_eq!(Username::parse("Alice.B").unwrap().as_str(), "alice.b");
        for invalid in ["ab", "-alice", "al ice", "älice"] {
            assert_eq!(
                Username::parse(invalid),
                Err(InvalidValue::Username),
                "{invalid}"
            );
        }
    }

    #[test]
    fn tags_are_a_bounded_set() {
        let tags = Tags::parse(["vip", " vip ", "berlin"]).unwrap();
        assert_eq!(tags.as_slice().len(), 2, "duplicates collapse");
        let twenty_one: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert_eq!(
            Tags::parse(&twenty_one),
            Err(InvalidValue::TooManyTags { max: 20 })
        );
        assert_eq!(
            Tags::parse([&"x".repeat(41)]),
            Err(InvalidValue::TooLong { max: 40 })
        );
    }

    #[test]
    fn stored_values_decode_as_recorded_whatever_todays_rules_say() {
        let long_name = "N".repeat(300);
        let name: CustomerName = serde_json::from_value(serde_json::json!(long_name)).unwrap();
        assert_eq!(name.as_str().len(), 300, "kept whole, not refused");
        assert!(
            CustomerName::parse(name.as_str()).is_err(),
            "a command may not say it"
        );
        let email: EmailAddress = serde_json::from_str(r#""not an address""#).unwrap();
        assert_eq!(email.as_str(), "not an address");
        let country: CountryCode = serde_json::from_str(r#""YU""#).unwrap();
        assert_eq!(country.as_str(), "YU", "a withdrawn code stays readable");
        let tags: Tags = serde_json::from_str(r#"["ok", "", "ok"]"#).unwrap();
        assert_eq!(tags.as_slice().len(), 3, "as recorded");
        assert!(
            serde_json::from_str::<Tags>(r#""not a list""#).is_err(),
            "the shape still counts"
        );
    }
}
