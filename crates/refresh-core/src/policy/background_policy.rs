//! [`BackgroundRefreshPolicy`]: how the background refresher counts
//! accounts it did not refresh itself.

/// How an account that needed no refresh by this worker is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipAction {
    /// Counted as skipped.
    Skip,
    /// Counted as a success (post-refresh actions run).
    Success,
}

/// The background policy (REFERENCE.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundRefreshPolicy {
    /// Another instance holds the refresh lease.
    pub on_lock_held: SkipAction,
    /// The re-read showed the account already refreshed (or race recovery
    /// found another worker's rotation).
    pub on_already_refreshed: SkipAction,
}

impl Default for BackgroundRefreshPolicy {
    /// Skip for both.
    fn default() -> Self {
        Self {
            on_lock_held: SkipAction::Skip,
            on_already_refreshed: SkipAction::Skip,
        }
    }
}

impl BackgroundRefreshPolicy {
    /// Success for both.
    pub fn success_override() -> Self {
        Self {
            on_lock_held: SkipAction::Success,
            on_already_refreshed: SkipAction::Success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_default_background_skips_and_override_succeeds() {
        let d = BackgroundRefreshPolicy::default();
        assert_eq!(
            (d.on_lock_held, d.on_already_refreshed),
            (SkipAction::Skip, SkipAction::Skip)
        );
        let o = BackgroundRefreshPolicy::success_override();
        assert_eq!(
            (o.on_lock_held, o.on_already_refreshed),
            (SkipAction::Success, SkipAction::Success)
        );
    }
}
