//! [`FaultPlan`]: scripted failures and call counts for wrapper backends.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::error::{StorageError, StorageErrorKind};

/// Per-operation queues of failures to inject, and per-operation call counts.
/// Shared by the fault-injecting wrappers so tests script them alike.
#[derive(Debug, Default)]
pub struct FaultPlan {
    queued: Mutex<HashMap<&'static str, VecDeque<StorageErrorKind>>>,
    always: Mutex<HashMap<&'static str, StorageErrorKind>>,
    calls: Mutex<HashMap<&'static str, u64>>,
    called: Notify,
}

impl FaultPlan {
    /// Makes the next `times` calls of `op` fail with `kind`.
    pub fn fail_next(&self, op: &'static str, times: usize, kind: StorageErrorKind) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        queued
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(kind, times));
    }

    /// Makes every call of `op` fail with `kind` until [`heal`](Self::heal).
    pub fn fail_always(&self, op: &'static str, kind: StorageErrorKind) {
        self.always
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(op, kind);
    }

    /// Removes every scripted failure.
    pub fn heal(&self) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.always
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: &'static str) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    /// Resolves once `op` has been called at least `n` times (counting
    /// failed calls): lets a test wait for a backend call without sleeping.
    pub async fn wait_for_calls(&self, op: &'static str, n: u64) {
        loop {
            let called = self.called.notified();
            if self.calls(op) >= n {
                return;
            }
            called.await;
        }
    }

    /// Counts a call of `op` and returns the failure scripted for it.
    ///
    /// # Errors
    /// The scripted failure, as a [`StorageError`].
    pub fn check(&self, op: &'static str) -> Result<(), StorageError> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_default() += 1;
        self.called.notify_waiters();
        let queued = self
            .queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(op)
            .and_then(VecDeque::pop_front);
        let kind = queued.or_else(|| {
            self.always
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(op)
                .copied()
        });
        match kind {
            Some(kind) => Err(StorageError::new(kind, op, "injected fault")),
            None => Ok(()),
        }
    }
}
