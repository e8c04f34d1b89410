//! [`Platform`]: which upstream provider an account belongs to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DomainError;

/// An upstream provider. The four built-in ones have variants; a plugin names
/// its own with [`Platform::Other`] (lower-case ASCII letters, digits, `-`
/// and `_`, at most 32 characters, validated by [`Platform::from_str`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// Anthropic (Claude).
    Anthropic,
    /// OpenAI (ChatGPT / Codex).
    OpenAi,
    /// Google Gemini (code_assist, google_one, ai_studio).
    Gemini,
    /// Google Antigravity.
    Antigravity,
    /// A provider added by a plugin.
    Other(String),
}

impl Platform {
    /// The stored name (`anthropic`, `openai`, `gemini`, `antigravity`, or the
    /// plugin's own).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
            Self::Antigravity => "antigravity",
            Self::Other(name) => name,
        }
    }

    /// The short prefix of lock and cache keys: `claude`, `openai`,
    /// `gemini`, `ag`, or the plugin's name (REFERENCE.md §9).
    pub fn key_prefix(&self) -> &str {
        match self {
            Self::Anthropic => "claude",
            Self::Antigravity => "ag",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Ok(match name {
            "anthropic" | "claude" => Self::Anthropic,
            "openai" => Self::OpenAi,
            "gemini" => Self::Gemini,
            "antigravity" => Self::Antigravity,
            _ if is_valid_plugin_name(name) => Self::Other(name.to_owned()),
            _ => {
                return Err(DomainError::InvalidPlatform {
                    name: sanitize_name(name),
                });
            }
        })
    }
}

fn is_valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Keeps an error message short and printable: the input may be anything.
fn sanitize_name(name: &str) -> String {
    name.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_builtin_and_plugin_platforms() {
        assert_eq!(
            "anthropic".parse::<Platform>().unwrap(),
            Platform::Anthropic
        );
        assert_eq!(" openai ".parse::<Platform>().unwrap(), Platform::OpenAi);
        assert_eq!(
            "my-plugin".parse::<Platform>().unwrap(),
            Platform::Other("my-plugin".into())
        );
        assert_eq!(Platform::Antigravity.key_prefix(), "ag");
        assert_eq!(Platform::Anthropic.key_prefix(), "claude");
    }

    #[test]
    fn invariant_10_unknown_platform_shapes_are_typed_errors() {
        for bad in ["", "Not A Platform", "x".repeat(40).as_str(), "drop;table"] {
            let err = bad.parse::<Platform>().unwrap_err();
            assert!(matches!(err, DomainError::InvalidPlatform { .. }), "{bad}");
        }
    }
}
