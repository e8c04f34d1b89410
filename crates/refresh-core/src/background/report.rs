//! [`CycleReport`]: what one background cycle did.

use std::ops::AddAssign;

/// Counts of one cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Accounts listed as due by the repository.
    pub total: u64,
    /// Of those, due by their executor's predicate.
    pub due: u64,
    /// Refreshed (or counted as success by the policy).
    pub refreshed: u64,
    /// Skipped: held elsewhere or already refreshed.
    pub skipped: u64,
    /// Failed after their attempts.
    pub failed: u64,
    /// Of the failed, marked `error` (non-retryable).
    pub marked_error: u64,
    /// Listing pages that failed, and listings stopped because their
    /// cursor did not advance.
    pub list_errors: u64,
    /// Due rows the repository could not read (corrupt credentials, unknown
    /// platform or type): reported and passed over, never refreshed.
    pub corrupt: u64,
    /// The cycle was cut short by shutdown.
    pub cancelled: bool,
}

impl CycleReport {
    /// Whether the cycle deserves an info-level summary.
    pub fn is_eventful(&self) -> bool {
        self.due > 0 || self.failed > 0 || self.list_errors > 0 || self.corrupt > 0
    }
}

/// The result of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountResult {
    NotDue,
    Refreshed,
    Skipped,
    Failed { marked: bool },
}

impl AddAssign<AccountResult> for CycleReport {
    fn add_assign(&mut self, result: AccountResult) {
        if result != AccountResult::NotDue {
            self.due += 1;
        }
        match result {
            AccountResult::NotDue => {}
            AccountResult::Refreshed => self.refreshed += 1,
            AccountResult::Skipped => self.skipped += 1,
            AccountResult::Failed { marked } => {
                self.failed += 1;
                self.marked_error += u64::from(marked);
            }
        }
    }
}
