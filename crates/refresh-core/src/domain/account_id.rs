//! [`AccountId`]: the stable identity of an upstream account.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of an account row. Locks and caches are keyed by it alone, never by
/// mutable fields such as a Gemini `project_id` (REFERENCE.md defect 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(pub i64);

impl AccountId {
    /// The raw integer.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for AccountId {
    fn from(value: i64) -> Self {
        Self(value)
    }
}

impl FromStr for AccountId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Self)
    }
}
