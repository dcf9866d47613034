//! [`Secret`]: configuration values that must never reach a log line (database URLs with
//! passwords, signing keys, bootstrap credentials).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: `Debug` prints `[redacted]`; [`Secret::expose`] is the one way out, so
/// every place that reads the value says so.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let secret = Secret::new("postgres://app:hunter2@db/chronicle");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "postgres://app:hunter2@db/chronicle");
    }
}
