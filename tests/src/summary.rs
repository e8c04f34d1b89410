//! [`Summary`]: what a `fault-worker` process counted (the flow observer's
//! events), printed as one line when it exits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The prefix of the summary line.
pub const LINE_PREFIX: &str = "fault-worker summary ";

/// Event counts by name: `lock_acquired:<layer>`, `lock_contended:<layer>`,
/// `lock_unavailable:<layer>`, `upstream:<outcome>`, `refresh:<outcome>`,
/// `token:ok`, `token:error`, `token:cancelled`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The counts.
    pub counts: BTreeMap<String, u64>,
}

impl Summary {
    /// The count of `name` (0 when never seen).
    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// The summary line in `log`, if the worker printed one.
    pub fn from_log(log: &str) -> Option<Self> {
        log.lines()
            .rev()
            .find_map(|line| line.strip_prefix(LINE_PREFIX))
            .and_then(|json| serde_json::from_str(json).ok())
    }

    /// The line to print.
    pub fn line(&self) -> String {
        format!(
            "{LINE_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }
}
