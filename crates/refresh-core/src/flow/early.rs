//! The early hand-out of a run to the request path: the token provider's
//! callers get the new credentials as soon as the fenced write committed,
//! while the rest of the run (the publish, the consumed mark, the lease
//! release) goes on on the run's own task.
//!
//! Nothing is handed out before the generation claim was won and the
//! answer saved into it (the write comes after both), so invariants 1 and 2
//! hold as they do for a caller that awaits the whole run.

use std::cell::RefCell;
use std::future::Future;

use tokio::sync::oneshot;

use crate::domain::Account;

tokio::task_local! {
    /// Where the run on this task hands out its persisted account.
    static PERSISTED: RefCell<Option<oneshot::Sender<Account>>>;
}

/// Runs `run` with `early` as the receiver of [`hand_out`].
pub(super) async fn handing_out_to<F: Future>(
    early: oneshot::Sender<Account>,
    run: F,
) -> F::Output {
    PERSISTED.scope(RefCell::new(Some(early)), run).await
}

/// Hands `account` (as stored by this run's fenced write) to the caller
/// waiting early, if any; once per run.
pub(super) fn hand_out(account: &Account) {
    let _ = PERSISTED.try_with(|slot| {
        if let Some(early) = slot.borrow_mut().take() {
            let _ = early.send(account.clone());
        }
    });
}
