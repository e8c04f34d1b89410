//! Seventh hostile review: a run's first due check and claim come from the
//! snapshot it was given (243a3ce), and a 2xx rotation without an access
//! token is stored (0e96a40). Each test hands the flow a snapshot that is
//! stale in one shape, or plants a claim a crashed holder left, and checks
//! invariants 1-4: one redemption per generation, no lost rotation, no
//! consumed token presented, no stuck account, no extra upstream call.
//! Three were breaks, now fixed and kept: a run took a rate-limit cell for
//! its snapshot's claim and another for its rounds' (now one per run), and
//! an answer merged over the stored map without a new access token revived
//! the stored, expired one with an assumed lifetime (`CredentialChange`).

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::{Backends, WINDOW, access_token, claim_key, expired_account, refresh_token};
use refresh_core::{
    AccountCatalog, AccountId, ClaimAcquire, ClaimId, ClaimState, ClaimStore, Credentials,
    FlowError, LockStrategy, Platform, RateLimit, RefreshExecutor, RefreshOutcome,
};

const ID: i64 = 1;

fn anthropic(b: &Backends) -> Arc<dyn RefreshExecutor> {
    b.executor(Platform::Anthropic)
}

/// Plants a claim on `token` as a holder that crashed would leave it, at
/// `base_version`; returns its id.
async fn plant_claim(b: &Backends, token: &str, base_version: u64) -> ClaimId {
    let id = ClaimId::random();
    let acquired = b
        .claims
        .inner()
        .acquire(
            &claim_key(token),
            &id,
            AccountId(ID),
            base_version,
            Duration::from_secs(600),
        )
        .await
        .expect("in-memory claim");
    assert!(matches!(acquired, ClaimAcquire::Won(_)));
    id
}

/// The credentials a rotation of `rt` would leave in its claim's answer: a
/// new refresh token and, when `access` is given, a valid access token.
fn answer(rt: &str, access: Option<&str>) -> Credentials {
    let mut creds = Credentials::new().with("refresh_token", rt);
    if let Some(at) = access {
        creds.insert("access_token", at);
        creds.set_expires_at(common::in_secs(3600));
    }
    creds
}

#[tokio::test(start_paused = true)]
async fn a_crashed_holders_answer_on_the_snapshots_token_is_applied_not_redeemed_again() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    // A holder redeemed rt-1-0 upstream, saved the answer and crashed.
    let (_, rotated) = b
        .upstream
        .redeem(AccountId(ID), "rt-1-0")
        .await
        .expect("first redemption");
    let id = plant_claim(&b, "rt-1-0", snapshot.credentials_version).await;
    let saved = b
        .claims
        .inner()
        .save_answer(
            &claim_key("rt-1-0"),
            &id,
            &answer(&rotated, Some("at-crash")),
        )
        .await
        .expect("in-memory save");
    assert!(saved);
    let flow = b.local_process();

    let outcome = flow
        .refresh_if_needed(&snapshot, &anthropic(&b), WINDOW)
        .await
        .expect("the answer is applied");

    let RefreshOutcome::Refreshed { account, recovered } = outcome else {
        panic!("expected the answer to be applied: {outcome:?}");
    };
    assert!(recovered, "the crashed holder's answer was recovered");
    assert_eq!(refresh_token(&account), rotated);
    assert_eq!(access_token(&account), "at-crash");
    assert_eq!(b.upstream.calls(), 1, "only the crashed holder's request");
    assert_eq!(b.upstream.reuses(), 0, "rt-1-0 was not presented again");
    assert_eq!(b.stored(ID).await, account);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_holders_rotation_without_access_token_is_stored_then_redeemed_once() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    let (_, rotated) = b
        .upstream
        .redeem(AccountId(ID), "rt-1-0")
        .await
        .expect("first redemption");
    let id = plant_claim(&b, "rt-1-0", snapshot.credentials_version).await;
    let saved = b
        .claims
        .inner()
        .save_answer(&claim_key("rt-1-0"), &id, &answer(&rotated, None))
        .await
        .expect("in-memory save");
    assert!(saved);
    let flow = b.local_process();

    let result = flow
        .refresh_if_needed(&snapshot, &anthropic(&b), WINDOW)
        .await;

    // The rotation is applied, the account is still due (its access token
    // expired), so the next round redeems the rotated token, once.
    let stored = b.stored(ID).await;
    assert_ne!(refresh_token(&stored), "rt-1-0", "no lost rotation");
    assert_eq!(b.upstream.reuses(), 0, "no consumed token presented");
    assert_eq!(b.upstream.calls(), 2, "the crash's request and one more");
    let account = match result {
        Ok(RefreshOutcome::Refreshed { account, .. }) => account,
        other => panic!("expected a refresh of the rotated token: {other:?}"),
    };
    assert_eq!(account, stored);
    assert_ne!(
        access_token(&stored),
        "at-1-0",
        "a new access token is served"
    );
    assert_eq!(
        b.upstream.current_refresh_token(AccountId(ID)),
        Some(refresh_token(&stored)),
        "the row holds the upstream's live token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_quarantined_claim_on_the_snapshots_token_still_quarantines_the_run() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    let id = plant_claim(&b, "rt-1-0", snapshot.credentials_version).await;
    assert!(
        b.claims
            .inner()
            .quarantine(&claim_key("rt-1-0"), &id, Duration::from_secs(600))
            .await
            .expect("in-memory quarantine")
    );
    let flow = b.local_process();

    let result = flow
        .refresh_if_needed(&snapshot, &anthropic(&b), WINDOW)
        .await;

    assert!(
        matches!(result, Err(FlowError::Quarantined { .. })),
        "{result:?}"
    );
    assert_eq!(b.upstream.calls(), 0, "nothing is sent");
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Quarantined));
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_of_another_version_with_the_same_token_redeems_once_from_the_row() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    // A backfill bumps the version; the token and expiry stay (still due).
    let bumped = snapshot.credentials.clone().with("project_id", "p-1");
    let row = b.overwrite(ID, &bumped).await;
    assert_ne!(row.credentials_version, snapshot.credentials_version);
    let flow = b.local_process();

    let outcome = flow
        .refresh_if_needed(&snapshot, &anthropic(&b), WINDOW)
        .await
        .expect("refreshes the row");

    let RefreshOutcome::Refreshed { account, .. } = outcome else {
        panic!("expected a refresh: {outcome:?}");
    };
    assert_eq!(b.upstream.calls(), 1, "one redemption");
    assert_eq!(
        account.credentials.string_view("project_id"),
        "p-1",
        "the backfill is kept"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert_eq!(
        b.claims.inner().snapshot().len(),
        1,
        "the snapshot's claim was removed"
    );
}

#[tokio::test(start_paused = true)]
async fn non_rotating_a_snapshot_refreshed_elsewhere_sends_nothing() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let snapshot = b.stored(ID).await;
    let executor = anthropic(&b);
    // Another process refreshes first: same refresh token, new version.
    let other = b.local_process();
    other
        .refresh_if_needed(&snapshot, &executor, WINDOW)
        .await
        .expect("first refresh");
    assert_eq!(b.upstream.calls(), 1);
    let flow = b.local_process();

    let outcome = flow
        .refresh_if_needed(&snapshot, &executor, WINDOW)
        .await
        .expect("the stored token stands");

    assert!(
        matches!(outcome, RefreshOutcome::StillFresh { .. }),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 1, "no extra upstream call");
}

#[tokio::test(start_paused = true)]
async fn non_rotating_a_stale_open_claim_on_an_older_version_does_not_stick_the_account() {
    let b = Backends::new([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    let snapshot = b.stored(ID).await;
    // A holder claimed rt-1-0 at the snapshot's version and crashed; then a
    // backfill bumped the version (still due, same token).
    plant_claim(&b, "rt-1-0", snapshot.credentials_version).await;
    let bumped = snapshot.credentials.clone().with("project_id", "p-1");
    b.overwrite(ID, &bumped).await;
    let flow = b.local_process();

    let outcome = flow
        .refresh_if_needed(&snapshot, &anthropic(&b), WINDOW)
        .await
        .expect("the stale claim is cleared and the row refreshed");

    assert!(
        matches!(outcome, RefreshOutcome::Refreshed { .. }),
        "{outcome:?}"
    );
    assert_eq!(b.upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stale_snapshot_of_a_deleted_account_sends_nothing_and_leaves_no_claim() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    assert!(
        b.repo
            .inner()
            .delete(AccountId(ID))
            .await
            .expect("in-memory delete")
    );
    let flow = b.local_process();

    let result = flow
        .refresh_if_needed(&snapshot, &anthropic(&b), WINDOW)
        .await;

    assert!(
        matches!(result, Err(FlowError::AccountNotFound { .. })),
        "{result:?}"
    );
    assert_eq!(b.upstream.calls(), 0);
    assert!(b.claims.inner().snapshot().is_empty());
}

/// A platform limit of one call per hour (burst 1): the run's one request
/// must not wait, since nothing was sent before it.
fn one_per_hour() -> RateLimit {
    RateLimit {
        calls: NonZeroU32::new(1).expect("non-zero"),
        per: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_snapshot_spends_no_extra_rate_limit_cell() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    // A backfill bumps the version (still due, same token): the snapshot's
    // claim is won and dropped at step 5, the rounds claim again.
    let bumped = snapshot.credentials.clone().with("project_id", "p-1");
    b.overwrite(ID, &bumped).await;
    let flow = b
        .flow_builder(LockStrategy::process_local())
        .rate_limit(Platform::Anthropic, one_per_hour())
        .build()
        .expect("valid flow");

    let executor = anthropic(&b);
    let run = flow.refresh_if_needed(&snapshot, &executor, WINDOW);
    let result = tokio::time::timeout(Duration::from_secs(60), run).await;

    assert!(
        result.is_ok(),
        "the run's only request waited for a second rate-limit cell: the \
         snapshot's dropped claim took the first one (RateLimit: at most N \
         upstream calls per period)"
    );
    assert_eq!(b.upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_whose_generation_is_held_spends_one_rate_limit_cell() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    // A live holder elsewhere: the run finds the claim twice (snapshot and
    // re-read) and sends nothing, yet it should not wait for the limiter
    // twice.
    plant_claim(&b, "rt-1-0", snapshot.credentials_version).await;
    let flow = b
        .flow_builder(LockStrategy::process_local())
        .rate_limit(Platform::Anthropic, one_per_hour())
        .build()
        .expect("valid flow");

    let executor = anthropic(&b);
    let run = flow.refresh_if_needed(&snapshot, &executor, WINDOW);
    let result = tokio::time::timeout(Duration::from_secs(60), run).await;

    assert!(
        result.is_ok(),
        "a run that sends nothing waited an hour on the rate limiter"
    );
    assert_eq!(b.upstream.calls(), 0);
}

// ---------------------------------------------------------------------------
// 0e96a40: a rotation without an access token, returned the way every
// provider executor returns its answer (the grant's credentials merged over
// the account's, see refresh-providers' executors and `RotatingExecutor`).
// ---------------------------------------------------------------------------

/// Redeems the claimed token on the fake upstream like [`RotatingExecutor`]
/// but answers like a 2xx `{"refresh_token": ..., "expires_in": 3600}`
/// without an access token, merged over the account as the provider
/// executors do.
#[derive(Debug)]
struct NoAccessTokenExecutor {
    upstream: Arc<refresh_core::testing::FakeUpstream>,
}

#[async_trait::async_trait]
impl RefreshExecutor for NoAccessTokenExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &refresh_core::Account,
        ctx: &refresh_core::RefreshContext,
    ) -> Result<Credentials, refresh_core::ProviderError> {
        let (_, rotated) = self
            .upstream
            .redeem(account.id, ctx.refresh_token.expose())
            .await?;
        let grant = refresh_core::TokenGrant {
            access_token: None,
            refresh_token: Some(rotated.into()),
            token_type: Some("Bearer".into()),
            expires_in: Some(3600),
            scope: None,
        };
        let issued = grant.to_credentials(
            ctx.now(),
            refresh_core::ExpiryRule::EXACT,
            refresh_core::GrantFields::default(),
        );
        Ok(issued.merged_over(&account.credentials))
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotation_without_access_token_does_not_revive_the_expired_access_token() {
    let b = Backends::new([expired_account(ID)]);
    let snapshot = b.stored(ID).await;
    let executor: Arc<dyn RefreshExecutor> = Arc::new(NoAccessTokenExecutor {
        upstream: Arc::clone(&b.upstream),
    });
    let flow = b.local_process();

    let result = flow.refresh_if_needed(&snapshot, &executor, WINDOW).await;

    let stored = b.stored(ID).await;
    assert_ne!(refresh_token(&stored), "rt-1-0", "the rotation is stored");
    assert_eq!(access_token(&stored), "at-1-0", "no new access token came");
    let expires_at = stored.credentials.expires_at().expect("readable");
    assert!(
        expires_at.is_none_or(|at| at <= common::t0()),
        "the expired at-1-0 now expires at {expires_at:?}: it is served as valid \
         (the flow returned {result:?}); CredentialChange::of counts the old access \
         token merged into the answer as usable and gives it ASSUMED_TOKEN_LIFETIME"
    );
    assert!(
        matches!(result, Err(FlowError::EmptyCredentials { .. })),
        "the caller is told no access token came: {result:?}"
    );
}
