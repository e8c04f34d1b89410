//! Regression tests from the fault reviews: several processes (separate
//! `RefreshFlow`s sharing one repository, lock and generation-claim store)
//! against a rotating upstream, each around an outstanding, failed or
//! ambiguous call. Each pins what the generation claim does with the fault
//! that once broke invariant 1 or 2 (a pending-call marker that could not be
//! saved, a stale in-process recovery copy, a late answer, a panic after
//! sending, clocks and timeouts that differ between processes).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use common::{
    Backends, WINDOW, access_token, advance_until, answer_refresh_token, key, refresh_token, t0,
};
use refresh_core::domain::keys;
use refresh_core::error::OAuthErrorCode;
use refresh_core::memory::InMemoryClaimStore;
use refresh_core::ports::{ClaimState, ManualClock};
use refresh_core::testing::conformance::account_expiring;
use refresh_core::testing::{FakeUpstream, Faulty};
use refresh_core::{
    Account, AccountId, ClaimStore, Clock, Credentials, FlowConfig, FlowError, LockStrategy,
    Platform, ProviderError, RefreshContext, RefreshExecutor, RefreshFlow, RefreshOutcome,
    StorageErrorKind,
};

const ID: i64 = 1;

fn id() -> AccountId {
    AccountId(ID)
}

/// The settings of every "process": a 1 s hard deadline, one write attempt.
fn process_config() -> FlowConfig {
    FlowConfig {
        upstream_timeout: Duration::from_secs(1),
        persist_attempts: 1,
        ..FlowConfig::default()
    }
}

/// The shared backends on a manual clock (the flows', the lock's and the
/// claim store's), and an Anthropic executor over the fake upstream.
struct World {
    clock: Arc<ManualClock>,
    backends: Backends,
    executor: Arc<dyn RefreshExecutor>,
}

impl std::ops::Deref for World {
    type Target = Backends;

    fn deref(&self) -> &Backends {
        &self.backends
    }
}

impl World {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let backends = Backends::on_clock(
            vec![account_expiring(ID, Some(-60))],
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        Self {
            executor: backends.executor(Platform::Anthropic),
            backends,
            clock,
        }
    }

    /// One "process": its own flow (own single flight) over the shared
    /// repository, lock and claim store.
    fn process(&self) -> RefreshFlow {
        self.process_over(Arc::clone(&self.claims) as Arc<dyn ClaimStore>)
    }

    /// A process that reaches the claim store through `claims` (its own
    /// view of the shared store, with its own faults).
    fn process_over(&self, claims: Arc<dyn ClaimStore>) -> RefreshFlow {
        self.backends.process_over(
            claims,
            LockStrategy::single(self.lock.clone()),
            Arc::clone(&self.clock) as Arc<dyn Clock>,
            process_config(),
        )
    }

    /// Refreshes with the executor from the account as stored now.
    async fn refresh(&self, flow: &RefreshFlow) -> Result<RefreshOutcome, FlowError> {
        self.refresh_stored(flow, ID, &self.executor).await
    }
}

/// F1 (was: the pending marker could not be saved, and the lease was given
/// up after the grace while the call was out). Now the claim is taken
/// before sending; when the claim store fails as the call times out, the
/// claim cannot be shortened to the quarantine and keeps its longer initial
/// life, so another process is still kept out long after the quarantine
/// would have ended.
#[tokio::test(start_paused = true)]
async fn invariant_1_claim_store_failing_at_the_timeout_keeps_the_claims_initial_life() {
    let w = World::new();
    let (a, b) = (w.process(), w.process());
    let config = process_config();
    w.claims
        .faults
        .fail_always("quarantine", StorageErrorKind::Unavailable);
    w.upstream.hold_responses();

    let err = w.refresh(&a).await.expect_err("ambiguous");
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Ambiguous { .. })),
        "{err:?}"
    );
    assert_eq!(w.claims.faults.calls("quarantine"), 1);
    let claim = w.only_claim();
    assert_eq!(
        claim.state,
        ClaimState::Open,
        "the quarantine could not be set"
    );
    assert_eq!(
        claim.remaining,
        Some(config.claim_ttl),
        "the claim keeps its initial life"
    );

    // Past the quarantine it could not set, B is still kept out.
    w.clock.advance(config.quarantine + Duration::from_secs(60));
    assert!(config.quarantine + Duration::from_secs(60) < config.claim_ttl);
    let outcome = w.refresh(&b).await.expect("held by the claim");
    assert_eq!(outcome, RefreshOutcome::HeldElsewhere);
    assert_eq!(w.upstream.calls(), 1, "B sent nothing");
    assert_eq!(w.upstream.reuses(), 0);
    assert_eq!(w.only_claim().id, claim.id, "A's claim was not taken over");
}

/// F2 (was: a stale in-process recovery copy masked an unreadable recovery
/// store, and the flow called the upstream "without knowing"). There is no
/// in-process copy any more: a process that cannot reach the claim store
/// sends nothing, whatever it saw before.
#[tokio::test(start_paused = true)]
async fn invariant_1_a_process_cut_off_from_the_claim_store_sends_nothing() {
    let w = World::new();
    let a_claims = Arc::new(Faulty::new(Arc::clone(w.claims.inner())));
    let a = w.process_over(Arc::clone(&a_claims) as Arc<dyn ClaimStore>);
    let (b, c) = (w.process(), w.process());

    // A: the upstream rotates rt-1-0 -> rt-1-1, the write fails: the answer
    // goes into the shared claim.
    w.fail_writes();
    let err = w.refresh(&a).await.expect_err("not persisted");
    assert!(
        matches!(
            err,
            FlowError::NotPersisted {
                answer_saved: true,
                ..
            }
        ),
        "{err:?}"
    );
    w.repo.faults.heal();
    // B applies A's answer.
    let out = w.refresh(&b).await.expect("applied from the claim");
    assert!(
        matches!(
            out,
            RefreshOutcome::Refreshed {
                recovered: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(refresh_token(&w.stored(ID).await), "rt-1-1");

    // Two hours later C presents rt-1-1 and gets no answer by the hard
    // deadline: that generation is quarantined.
    w.clock.advance(Duration::from_secs(7200));
    w.upstream.hold_responses();
    w.refresh(&c).await.expect_err("ambiguous");
    assert_eq!(
        w.claims
            .inner()
            .claims_of(id(), ClaimState::Quarantined)
            .len(),
        1
    );

    // The claim store becomes unreachable for A only.
    a_claims
        .faults
        .fail_always("acquire", StorageErrorKind::Unavailable);
    let err = w.refresh(&a).await.expect_err("no claim, no call");
    assert!(
        matches!(&err, FlowError::Claim { id: failed, source } if *failed == id() && source.kind() == StorageErrorKind::Unavailable),
        "{err:?}"
    );
    assert_eq!(w.upstream.reuses(), 0, "rt-1-1 presented twice");
    assert_eq!(
        w.upstream.calls(),
        2,
        "A called the upstream although the claim store was unreachable"
    );

    // Reaching the store again, A fails fast on C's quarantine.
    a_claims.faults.heal();
    let err = w.refresh(&a).await.expect_err("quarantined");
    assert!(matches!(err, FlowError::Quarantined { .. }), "{err:?}");
    assert_eq!(w.upstream.calls(), 2);
}

/// F3 (was: a stale in-process record resurrected after another process
/// applied and removed the durable copy overwrote a newer access token of a
/// non-rotating provider). An answer of a non-rotating account applies only
/// at its base version; one whose removal failed is cleared, never applied,
/// once the account moved on (issue 5, break 12).
#[tokio::test(start_paused = true)]
async fn invariant_3_stale_answer_of_a_non_rotating_account_never_overwrites_a_newer_token() {
    let w = World::new();
    w.upstream.keep_refresh_tokens();
    let (a, b) = (w.process(), w.process());
    let old_snapshot = w.stored(ID).await;

    // A: the write fails; the answer (at-1-1) goes into the claim.
    w.fail_writes();
    let err = w.refresh(&a).await.expect_err("not persisted");
    assert!(
        matches!(
            err,
            FlowError::NotPersisted {
                answer_saved: true,
                ..
            }
        ),
        "{err:?}"
    );
    w.repo.faults.heal();

    // B applies it; removing the (non-rotating) claim afterwards fails,
    // every retry included.
    w.claims
        .faults
        .fail_next("remove", 3, StorageErrorKind::Unavailable);
    let out = w.refresh(&b).await.expect("B applies at-1-1");
    assert!(
        matches!(
            out,
            RefreshOutcome::Refreshed {
                recovered: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(access_token(&w.stored(ID).await), "at-1-1");
    let leftover = w.only_claim();
    assert_eq!(
        leftover.state,
        ClaimState::Answered,
        "the removal failed: the answer is still in the claim"
    );
    assert_eq!(leftover.base_version, 0);

    // Two hours later B refreshes again with the same refresh token: the
    // leftover answer is stale (account version 1 > base 0) and is cleared,
    // not applied.
    w.clock.advance(Duration::from_secs(7200));
    let out = w.refresh(&b).await.expect("B refreshes: at-1-2");
    assert!(
        matches!(
            &out,
            RefreshOutcome::Refreshed {
                recovered: false,
                ..
            }
        ),
        "{out:?}"
    );
    let stored = w.stored(ID).await;
    assert_eq!(access_token(&stored), "at-1-2");
    assert_eq!(stored.credentials_version, 2);
    assert_eq!(w.upstream.calls(), 2);

    // A, with its old snapshot, resurrects nothing.
    let out = a
        .refresh_if_needed(&old_snapshot, &w.executor, WINDOW)
        .await
        .expect("A's flow");
    let stored = w.stored(ID).await;
    assert_eq!(
        access_token(&stored),
        "at-1-2",
        "A resurrected a stale answer over a newer token (outcome {out:?})"
    );
    assert!(matches!(out, RefreshOutcome::StillFresh { .. }), "{out:?}");
    assert_eq!(stored.credentials_version, 2);
    assert!(
        w.claims.inner().is_empty(),
        "non-rotating claims are removed once their answer is stored"
    );
    assert_eq!(w.upstream.calls(), 2);
    assert_eq!(w.upstream.reuses(), 0);
}

/// F4 (was: an answer arriving after the grace was kept only in process
/// memory when the recovery store refused it). Answers no longer arrive
/// after the flow stopped waiting; the remaining case is an answer that
/// neither the account nor the claim store takes. The rescue keeps the
/// lease and saves the answer into the claim once the claim store is back;
/// the next flow applies it without an upstream call once the repository
/// is back.
#[tokio::test(start_paused = true)]
async fn invariant_2_answer_is_rescued_into_the_claim_when_the_write_and_the_claim_store_both_fail()
{
    let w = World::new();
    let (a, b) = (w.process(), w.process());
    let key = key(&Platform::Anthropic, ID);
    w.fail_writes();
    w.claims
        .faults
        .fail_always("save_answer", StorageErrorKind::Unavailable);

    let err = w.refresh(&a).await.expect_err("nowhere to put the answer");
    assert!(
        matches!(
            &err,
            FlowError::NotPersisted {
                answer_saved: false,
                credentials,
                ..
            } if credentials.refresh_token().is_some_and(|t| t.expose() == "rt-1-1")
        ),
        "{err:?}"
    );
    assert!(
        !w.lease_is_free(&key).await,
        "the rescue keeps the lease while the answer is only in memory"
    );
    // A graceful shutdown (or a one-shot command) waits for the rescue:
    // exiting now would lose the only copy of the rotated token.
    assert_eq!(a.in_flight(), 1, "the rescue counts as in flight");
    let drained = {
        let a = a.clone();
        tokio::spawn(async move { a.drained().await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!drained.is_finished(), "drained waits for the rescue");

    // B meanwhile: held elsewhere, nothing sent.
    let out = w.refresh(&b).await.expect("held");
    assert_eq!(out, RefreshOutcome::HeldElsewhere);
    assert_eq!(w.upstream.calls(), 1);

    // The claim store heals first: the rescue saves the answer into the
    // claim, and only then gives the lease back.
    w.claims.faults.heal();
    advance_until(
        async || w.lease_is_free(&key).await,
        Duration::from_millis(100),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        w.lease_is_free(&key).await,
        "released once the answer is durable"
    );
    drained
        .await
        .expect("drained resolves once the rescue landed");
    assert_eq!(a.in_flight(), 0);
    let claim = w.only_claim();
    assert_eq!(claim.state, ClaimState::Answered);
    assert_eq!(answer_refresh_token(&claim).as_deref(), Some("rt-1-1"));
    assert_eq!(w.stored(ID).await.credentials_version, 0);

    // B finds the answer, but the repository is still down: the answer stays
    // in the claim.
    let err = w.refresh(&b).await.expect_err("still not persisted");
    assert!(
        matches!(
            err,
            FlowError::NotPersisted {
                answer_saved: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(w.only_claim().state, ClaimState::Answered);

    // The repository heals: B persists the answer, no upstream call.
    w.repo.faults.heal();
    let out = w.refresh(&b).await.expect("applied from the claim");
    let RefreshOutcome::Refreshed {
        account,
        recovered: true,
    } = &out
    else {
        panic!("expected a recovered refresh, got {out:?}");
    };
    assert_eq!(
        Some(refresh_token(account)),
        w.upstream.current_refresh_token(id())
    );
    assert_eq!(w.stored(ID).await, *account);
    assert_eq!(
        w.upstream.calls(),
        1,
        "the consumed rt-1-0 was never re-presented"
    );
    assert_eq!(w.upstream.reuses(), 0);
    assert_eq!(w.only_claim().state, ClaimState::Consumed);
}

/// An executor whose request reaches the upstream (which rotates), then
/// panics while handling the answer (a plugin bug on a bad body).
struct PanicsAfterSend(Arc<FakeUpstream>);

#[async_trait]
impl RefreshExecutor for PanicsAfterSend {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let _ = self.0.redeem(account.id, ctx.refresh_token.expose()).await;
        panic!("parser bug after the answer arrived");
    }
}

/// F5 (was: a panic in the executor was treated as "nothing was sent"). A
/// panic is ambiguous: the claim is quarantined, and neither this process
/// nor another presents the token again.
#[tokio::test(start_paused = true)]
async fn invariant_1_executor_panic_after_send_blocks_a_second_presentation() {
    let w = World::new();
    let (a, b) = (w.process(), w.process());
    let bad: Arc<dyn RefreshExecutor> = Arc::new(PanicsAfterSend(w.upstream.clone()));

    let err = w
        .refresh_stored(&a, ID, &bad)
        .await
        .expect_err("task failed");
    assert!(
        matches!(err.provider_error(), Some(ProviderError::Ambiguous { .. })),
        "{err:?}"
    );
    assert!(err.is_retryable(), "background retries it");
    assert_eq!(w.only_claim().state, ClaimState::Quarantined);

    for flow in [&a, &b] {
        let err = w.refresh(flow).await.expect_err("quarantined");
        assert!(matches!(err, FlowError::Quarantined { .. }), "{err:?}");
    }
    assert_eq!(w.upstream.calls(), 1);
    assert_eq!(
        w.upstream.reuses(),
        0,
        "rt-1-0 presented twice after a panic"
    );
}

/// Issue 5, breaks 3 and 4: a claim written by a process with a 60 s hard
/// deadline must not look expired to a process configured with 1 s, nor to
/// a host whose clock runs ahead. Expiry is the claim store's alone.
#[tokio::test(start_paused = true)]
async fn invariant_1_quarantine_is_judged_by_the_store_clock_not_by_another_process() {
    let w = World::new();
    let a = RefreshFlow::builder(
        w.repo.clone(),
        LockStrategy::single(w.lock.clone()),
        w.claims.clone(),
    )
    .clock(Arc::clone(&w.clock) as Arc<dyn Clock>)
    .build()
    .expect("default settings: H = 60 s");
    w.upstream
        .fail_after_rotation_next(ProviderError::ServerError {
            status: Some(502),
            reason: "bad gateway".into(),
        });
    let err = w.refresh(&a).await.expect_err("5xx after the rotation");
    assert!(
        matches!(
            err.provider_error(),
            Some(ProviderError::ServerError { .. })
        ),
        "{err:?}"
    );
    let quarantine = a.config().quarantine;
    assert_eq!(w.only_claim().remaining, Some(quarantine));

    // B: a 1 s hard deadline and a clock an hour ahead of everyone else.
    let ahead = Arc::new(ManualClock::new(t0() + chrono::Duration::hours(1)));
    let b = RefreshFlow::builder(
        w.repo.clone(),
        LockStrategy::single(w.lock.clone()),
        w.claims.clone(),
    )
    .clock(Arc::clone(&ahead) as Arc<dyn Clock>)
    .config(process_config())
    .build()
    .expect("valid flow");
    let err = w.refresh(&b).await.expect_err("still quarantined");
    assert!(
        matches!(err, FlowError::Quarantined { until, .. } if until == ahead.now() + quarantine),
        "{err:?}"
    );
    assert_eq!(w.upstream.calls(), 1, "B presented the consumed token");
    assert_eq!(w.upstream.reuses(), 0);
}

fn code(code: &str) -> OAuthErrorCode {
    OAuthErrorCode::new(code)
}

/// Issue 5, breaks 1 and 2 (and step 7): every outcome that may have
/// consumed the token keeps the claim as a quarantine — an executor that
/// reports `Ambiguous` itself, a 2xx with an unusable body, a 5xx, an
/// unknown status — so the next attempt (the background's retry, another
/// process) does not present it again.
#[tokio::test(start_paused = true)]
async fn invariant_1_outcomes_that_may_have_consumed_the_token_quarantine_it() {
    for error in [
        ProviderError::Ambiguous {
            reason: "connection reset after sending".into(),
        },
        ProviderError::InvalidResponse {
            reason: "200 with an HTML body".into(),
        },
        ProviderError::ServerError {
            status: Some(500),
            reason: "upstream status 500".into(),
        },
        ProviderError::UnexpectedStatus {
            status: 418,
            code: None,
        },
    ] {
        let w = World::new();
        let (a, b) = (w.process(), w.process());
        w.upstream.fail_after_rotation_next(error.clone());

        let err = w.refresh(&a).await.expect_err("the refresh failed");
        assert_eq!(err.provider_error(), Some(&error), "{err:?}");
        let claim = w.only_claim();
        assert_eq!(claim.state, ClaimState::Quarantined, "{error:?}");

        for flow in [&a, &b] {
            let retry = w.refresh(flow).await.expect_err("quarantined");
            assert!(
                matches!(retry, FlowError::Quarantined { .. }),
                "{error:?}: {retry:?}"
            );
        }
        assert_eq!(w.upstream.calls(), 1, "{error:?}");
        assert_eq!(w.upstream.reuses(), 0, "{error:?}: consumed token re-sent");
        assert_eq!(w.stored(ID).await.credentials_version, 0, "{error:?}");
    }
}

/// Step 7's allowlist: an outcome that provably did not consume the token
/// removes the claim, and the next attempt refreshes at once.
#[tokio::test(start_paused = true)]
async fn invariant_1_outcomes_that_provably_did_not_consume_the_token_release_the_claim() {
    for error in [
        ProviderError::NotSent {
            reason: "dns lookup failed".into(),
        },
        ProviderError::RateLimited { retry_after: None },
        ProviderError::InvalidClient {
            code: code("invalid_client"),
            description: None,
        },
        ProviderError::AccessDenied { description: None },
        ProviderError::Configuration {
            reason: "no OAuth client configured".into(),
        },
        ProviderError::UnexpectedStatus {
            status: 400,
            code: Some(code("invalid_scope")),
        },
    ] {
        let w = World::new();
        let (a, b) = (w.process(), w.process());
        w.upstream.fail_next(error.clone());

        let err = w.refresh(&a).await.expect_err("the refresh failed");
        assert_eq!(err.provider_error(), Some(&error), "{err:?}");
        assert!(
            w.claims.inner().is_empty(),
            "{error:?}: the claim is removed"
        );

        let out = w.refresh(&b).await.expect("refreshed at once");
        assert!(
            matches!(&out, RefreshOutcome::Refreshed { account, .. } if refresh_token(account) == "rt-1-1"),
            "{error:?}: {out:?}"
        );
        assert_eq!(w.upstream.calls(), 2, "{error:?}");
        assert_eq!(w.upstream.reuses(), 0, "{error:?}");
        assert_eq!(w.only_claim().state, ClaimState::Consumed, "{error:?}");
    }
}

/// Step 12: re-sending a non-rotating provider's refresh token is harmless,
/// so a maybe-consumed outcome is not quarantined.
#[tokio::test(start_paused = true)]
async fn invariant_1_non_rotating_token_is_not_quarantined_after_a_server_error() {
    let w = World::new();
    w.upstream.keep_refresh_tokens();
    let (a, b) = (w.process(), w.process());
    w.upstream.fail_next(ProviderError::ServerError {
        status: Some(503),
        reason: "unavailable".into(),
    });

    let err = w.refresh(&a).await.expect_err("5xx");
    assert!(
        matches!(
            err.provider_error(),
            Some(ProviderError::ServerError { .. })
        ),
        "{err:?}"
    );
    assert!(
        w.claims.inner().is_empty(),
        "no quarantine for a kept token"
    );

    let out = w.refresh(&b).await.expect("refreshed at once");
    assert!(
        matches!(&out, RefreshOutcome::Refreshed { account, .. } if access_token(account) == "at-1-1" && refresh_token(account) == "rt-1-0"),
        "{out:?}"
    );
    assert_eq!(w.upstream.calls(), 2);
    assert_eq!(w.upstream.reuses(), 0);
    assert!(
        w.claims.inner().is_empty(),
        "a kept token's claim is removed, not consumed"
    );
}

/// Step 8: a consumed generation is remembered; an old export or a restored
/// backup that writes the consumed refresh token back is refused as
/// "credentials regressed", with no upstream call.
#[tokio::test(start_paused = true)]
async fn invariant_1_consumed_token_written_back_is_refused_without_a_call() {
    let w = World::new();
    let flow = w.process();
    let export = w.stored(ID).await;
    let out = w.refresh(&flow).await.expect("refreshed");
    assert!(matches!(out, RefreshOutcome::Refreshed { .. }), "{out:?}");
    assert_eq!(w.only_claim().state, ClaimState::Consumed);

    // An operator re-imports the old export (rt-1-0) over the new tokens.
    w.overwrite(ID, &export.credentials).await;
    assert_eq!(
        w.stored(ID).await.credentials.get(keys::REFRESH_TOKEN),
        export.credentials.get(keys::REFRESH_TOKEN)
    );

    let err = w.refresh(&w.process()).await.expect_err("regressed");
    assert!(
        matches!(err, FlowError::CredentialsRegressed { id: failed, version: 2 } if failed == id()),
        "{err:?}"
    );
    assert_eq!(
        err.observed_version(),
        Some(2),
        "the error mark is fenced on it"
    );
    assert!(!err.is_retryable());
    assert_eq!(w.upstream.calls(), 1, "the consumed token is not presented");
    assert_eq!(w.upstream.reuses(), 0);
}

/// The in-memory claim store is a single-process opt-in: its expiry runs on
/// the clock it was built with, whatever clock the flows use.
#[tokio::test(start_paused = true)]
async fn invariant_1_in_memory_claim_store_expires_on_its_own_clock() {
    let store_clock = Arc::new(ManualClock::new(t0()));
    let claims = Arc::new(InMemoryClaimStore::new(
        Arc::clone(&store_clock) as Arc<dyn Clock>
    ));
    let w = World::new();
    let flow = RefreshFlow::builder(
        w.repo.clone(),
        LockStrategy::single(w.lock.clone()),
        Arc::clone(&claims) as Arc<dyn ClaimStore>,
    )
    .clock(Arc::clone(&w.clock) as Arc<dyn Clock>)
    .config(process_config())
    .build()
    .expect("valid flow");
    w.upstream.fail_next(ProviderError::InvalidResponse {
        reason: "truncated body".into(),
    });
    w.refresh(&flow).await.expect_err("2xx garbage");

    // The flows' clock moves a day; the store's does not.
    w.clock.advance(Duration::from_secs(24 * 3600));
    let err = w.refresh(&flow).await.expect_err("still quarantined");
    assert!(matches!(err, FlowError::Quarantined { .. }), "{err:?}");

    store_clock.advance(process_config().quarantine);
    let out = w.refresh(&flow).await.expect("quarantine over");
    assert!(matches!(out, RefreshOutcome::Refreshed { .. }), "{out:?}");
    assert_eq!(w.upstream.calls(), 2);
    assert_eq!(w.upstream.reuses(), 0);
}
