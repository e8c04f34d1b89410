//! [`Secret`]: a string that never shows itself in `Debug` or `Display`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A token, client secret or password.
///
/// `Debug` and `Display` print `[redacted]`; the value is reachable only
/// through [`Secret::expose`], so it cannot end up in a log line or an error
/// message by accident. Cloning is cheap (the text is shared), which keeps the
/// warm token-read path allocation-free.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call this only where the value leaves the process
    /// (an HTTP header, a storage write), never to format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty or whitespace only.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_9_secret_debug_and_display_are_redacted() {
        let secret = Secret::from("sk-live-very-secret");
        assert!(!format!("{secret:?}").contains("very-secret"));
        assert!(!format!("{secret}").contains("very-secret"));
        assert_eq!(secret.expose(), "sk-live-very-secret");
    }

    #[test]
    fn blank_detection_trims() {
        assert!(Secret::from("  ").is_blank());
        assert!(!Secret::from(" x ").is_blank());
    }
}
