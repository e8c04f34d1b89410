//! [`AccountType`] and [`AccountStatus`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DomainError;

/// How an account authenticates. Only [`AccountType::OAuth`] accounts are
/// refreshed; the others carry a static credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountType {
    /// OAuth access + refresh token.
    OAuth,
    /// Claude setup token (about a year; never refreshed).
    SetupToken,
    /// A static API key.
    ApiKey,
    /// Antigravity upstream account (static `api_key`).
    Upstream,
    /// AWS Bedrock.
    Bedrock,
}

impl AccountType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth => "oauth",
            Self::SetupToken => "setup-token",
            Self::ApiKey => "apikey",
            Self::Upstream => "upstream",
            Self::Bedrock => "bedrock",
        }
    }
}

/// Whether the refresher considers an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AccountStatus {
    /// Scheduled and refreshed.
    #[default]
    Active,
    /// Switched off by an operator.
    Disabled,
    /// A non-retryable refresh failure; needs a human.
    Error,
}

impl AccountStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Error => "error",
        }
    }
}

macro_rules! string_enum {
    ($ty:ident, $what:literal, [$($name:literal => $variant:ident),+ $(,)?]) => {
        impl FromStr for $ty {
            type Err = DomainError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($name => Ok(Self::$variant),)+
                    other => Err(DomainError::InvalidEnum {
                        what: $what,
                        value: other.chars().take(32).collect(),
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum!(AccountType, "account type", [
    "oauth" => OAuth,
    "setup-token" => SetupToken,
    "apikey" => ApiKey,
    "upstream" => Upstream,
    "bedrock" => Bedrock,
]);

string_enum!(AccountStatus, "account status", [
    "active" => Active,
    "disabled" => Disabled,
    "error" => Error,
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_names() {
        for t in [
            AccountType::OAuth,
            AccountType::SetupToken,
            AccountType::ApiKey,
            AccountType::Upstream,
            AccountType::Bedrock,
        ] {
            assert_eq!(t.as_str().parse::<AccountType>().unwrap(), t);
        }
        assert!(matches!(
            "sso".parse::<AccountType>(),
            Err(DomainError::InvalidEnum { .. })
        ));
        assert_eq!(
            "error".parse::<AccountStatus>().unwrap(),
            AccountStatus::Error
        );
    }
}
