//! Regression tests for schedules the refresh-model checker found against
//! the flow (crates/refresh-model/README.md, "Findings"). F1 and F2 are in
//! `hostile_review2.rs`; this file holds what the model found after those
//! fixes were modelled.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::{
    Backends, HookedRepository, ISSUED_LIFETIME, RepositoryHooks, expired_account, let_time_pass,
    refresh_stored,
};
use refresh_core::memory::InMemoryAccountRepository;
use refresh_core::ports::{CasExpectation, CasOutcome};
use refresh_core::{
    AccountId, AccountRepository, Credentials, RefreshOutcome, StorageError, StorageErrorKind,
};
use std::sync::Mutex;

const ID: i64 = 1;

/// Re-imports `backup` (an operator restoring an old export) just before
/// the `at`-th credential write reaches the repository.
struct ReimportBeforeWrite {
    at: usize,
    writes: AtomicUsize,
    backup: Mutex<Option<Credentials>>,
}

#[async_trait]
impl RepositoryHooks for ReimportBeforeWrite {
    async fn around_compare_and_set(
        &self,
        inner: &dyn AccountRepository,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            let backup = self.backup.lock().unwrap().take().expect("backup set");
            let current = inner.get(id).await?.expect("account exists");
            let reimport = CasExpectation::of(&current);
            inner
                .compare_and_set_credentials(id, reimport, &backup)
                .await?;
        }
        inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }
}

/// The model's schedule: the first refresh's answer is saved into its claim
/// and written, but its consumed mark keeps failing (the claim stays
/// `Answered`, the detached retry pending). The operator re-imports that
/// first token while the second refresh's write is on its way. The row then
/// holds a token nobody marked consumed yet; before the fix `write_once`
/// read it as another writer's live token and dropped the live answer. A
/// token whose claim holds an answer was redeemed: the live answer goes
/// over it.
#[tokio::test(start_paused = true)]
async fn a_reimported_token_whose_mark_is_pending_does_not_make_the_live_answer_yield() {
    let repo = HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts([expired_account(
            ID,
        )])),
        hooks: ReimportBeforeWrite {
            at: 2,
            writes: AtomicUsize::new(0),
            backup: Mutex::new(None),
        },
    };
    let b = Backends::over(repo);
    let first = b.stored(ID).await.credentials;
    *b.repo.inner().hooks.backup.lock().unwrap() = Some(first.clone());
    let flow = b.local_process();
    let exec = b.executor(refresh_core::Platform::Anthropic);
    b.claims
        .faults
        .fail_next("mark_consumed", 100_000, StorageErrorKind::Unavailable);

    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let first_token = first.refresh_token().expect("a refresh token");
    assert_eq!(
        b.claim_state(first_token.expose()).await,
        Some(refresh_core::ports::ClaimState::Answered),
        "the mark is still pending"
    );

    let_time_pass(ISSUED_LIFETIME).await;
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let stored = b.stored(ID).await.credentials.refresh_token();
    let live = b.upstream.current_refresh_token(AccountId(ID));
    assert_eq!(
        stored.as_ref().map(|t| t.expose().to_owned()),
        live,
        "the live generation is stored, not the re-imported one"
    );
    assert_eq!(b.upstream.calls(), 2);
    assert_eq!(b.upstream.reuses(), 0);
}
