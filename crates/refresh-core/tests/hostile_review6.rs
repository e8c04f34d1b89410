//! Sixth hostile review: attacks on `write_once`'s claim-based decisions
//! (the answer's own token claimed → landed; the presented token back and
//! consumed → landed; a replacing token consumed or answered → re-apply).
//! `d*` tests reproduced defects, fixed since in `write_once`: an answered
//! replacing token is dead only when its answer's own token is claimed and
//! the account rotates (d1, d2); a quarantined one counts as redeemed
//! (d3); a rotated answer whose own token nobody claimed is re-applied over
//! the presented token even when that is consumed (d4). Their names say
//! what used to happen. `r*` tests passed from the start and are kept.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{
    Backends, HookedRepository, RepositoryHooks, claim_key, expired_account, let_time_pass,
    refresh_stored, spawn_refresh, t0,
};
use refresh_core::memory::InMemoryAccountRepository;
use refresh_core::ports::{CasExpectation, CasOutcome};
use refresh_core::{
    Account, AccountId, AccountRepository, ClaimId, ClaimState, ClaimStore, Credentials, FlowError,
    OAuthErrorCode, Platform, ProviderError, RefreshContext, RefreshExecutor, RefreshOutcome,
    StorageError, StorageErrorKind,
};
use tokio::sync::{Notify, watch};

const ID: i64 = 1;

/// The token whose first write is held, the notice that it arrived, and
/// the notice that lets it go.
type HeldWrite = (String, Arc<Notify>, Arc<Notify>);

// ---------------------------------------------------------------------------
// A multi-grant upstream: every token in `valid` may be redeemed once
// (rotating) or forever (keeping); an operator's fresh login adds a token.
// ---------------------------------------------------------------------------

struct Grants {
    rotates: bool,
    valid: Mutex<HashSet<String>>,
    reuses: Mutex<u64>,
    calls: watch::Sender<u64>,
    /// Responses to a presented token are held until the notify fires.
    hold: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Grants {
    fn new(rotates: bool, initial: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            rotates,
            valid: Mutex::new(initial.iter().map(|s| (*s).to_owned()).collect()),
            reuses: Mutex::new(0),
            calls: watch::channel(0).0,
            hold: Mutex::new(HashMap::new()),
        })
    }
    fn login(&self, token: &str) {
        self.valid.lock().unwrap().insert(token.to_owned());
    }
    fn hold(&self, token: &str) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.hold
            .lock()
            .unwrap()
            .insert(token.to_owned(), Arc::clone(&n));
        n
    }
    fn is_valid(&self, token: &str) -> bool {
        self.valid.lock().unwrap().contains(token)
    }
    fn reuses(&self) -> u64 {
        *self.reuses.lock().unwrap()
    }
    async fn wait_for_calls(&self, n: u64) {
        let mut rx = self.calls.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }
}

#[async_trait]
impl RefreshExecutor for Grants {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }
    fn rotates_refresh_token(&self) -> bool {
        self.rotates
    }
    async fn refresh(
        &self,
        _account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let presented = ctx.refresh_token.expose().to_owned();
        self.calls.send_modify(|c| *c += 1);
        let next = {
            let mut valid = self.valid.lock().unwrap();
            if !valid.contains(&presented) {
                *self.reuses.lock().unwrap() += 1;
                return Err(ProviderError::InvalidGrant {
                    code: OAuthErrorCode::new("refresh_token_reused"),
                    description: None,
                });
            }
            if self.rotates {
                valid.remove(&presented);
                let next = format!("{presented}+");
                valid.insert(next.clone());
                next
            } else {
                presented.clone()
            }
        };
        let hold = self.hold.lock().unwrap().remove(&presented);
        if let Some(hold) = hold {
            hold.notified().await;
        }
        let mut out = Credentials::new()
            .with("access_token", format!("at-from-{presented}"))
            .with("refresh_token", next);
        out.set_expires_at(ctx.now() + chrono::Duration::seconds(3600));
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// A repository hook: hold the credential write that carries a given refresh
// token, once; optionally run an operator write just before a given write.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Hooks {
    /// Hold the first write whose credentials carry this refresh token.
    hold: Mutex<Option<HeldWrite>>,
    /// Write these credentials over the row (an operator) before the first
    /// flow write reaches the repository.
    before_first: Mutex<Option<Credentials>>,
    fired: AtomicBool,
    /// The first flow write commits but reports a timeout; `lost` fires.
    lose_first: AtomicBool,
    lost: Notify,
}

#[async_trait]
impl RepositoryHooks for Hooks {
    async fn around_compare_and_set(
        &self,
        inner: &dyn AccountRepository,
        id: AccountId,
        expected: CasExpectation,
        credentials: &Credentials,
    ) -> Result<CasOutcome, StorageError> {
        if !self.fired.swap(true, Ordering::SeqCst) {
            let op = self.before_first.lock().unwrap().take();
            if let Some(op) = op {
                let current = inner.get(id).await?.expect("account exists");
                inner
                    .compare_and_set_credentials(id, CasExpectation::of(&current), &op)
                    .await?;
            }
        }
        if self.lose_first.swap(false, Ordering::SeqCst) {
            inner
                .compare_and_set_credentials(id, expected, credentials)
                .await?;
            self.lost.notify_one();
            return Err(StorageError::new(
                StorageErrorKind::Timeout,
                "compare_and_set_credentials",
                "answer lost",
            ));
        }
        let rt = credentials.refresh_token().map(|t| t.expose().to_owned());
        let hold = {
            let mut h = self.hold.lock().unwrap();
            if h.as_ref().is_some_and(|(t, _, _)| Some(t) == rt.as_ref()) {
                h.take()
            } else {
                None
            }
        };
        if let Some((_, reached, go)) = hold {
            reached.notify_one();
            go.notified().await;
        }
        inner
            .compare_and_set_credentials(id, expected, credentials)
            .await
    }
}

type HookedBackends = Backends<HookedRepository<Hooks>>;

fn hooked(accounts: impl IntoIterator<Item = Account>) -> HookedBackends {
    Backends::over(HookedRepository {
        inner: Arc::new(InMemoryAccountRepository::with_accounts(accounts)),
        hooks: Hooks::default(),
    })
}

fn hooks(b: &HookedBackends) -> &Hooks {
    &b.repo.inner().hooks
}

/// An operator's write past every hook and fault.
async fn operator_write(b: &HookedBackends, credentials: &Credentials) -> Account {
    let inner = &b.repo.inner().inner;
    let current = inner.get(AccountId(ID)).await.unwrap().unwrap();
    match inner
        .compare_and_set_credentials(AccountId(ID), CasExpectation::of(&current), credentials)
        .await
        .unwrap()
    {
        CasOutcome::Applied(a) => a,
        other => panic!("{other:?}"),
    }
}

fn expired_creds(at: &str, rt: &str) -> Credentials {
    let mut c = Credentials::new()
        .with("access_token", at)
        .with("refresh_token", rt);
    c.set_expires_at(t0() - chrono::Duration::seconds(10));
    c
}

fn rt_of(a: &Account) -> Option<String> {
    a.credentials.refresh_token().map(|t| t.expose().to_owned())
}

/// The schedule of d1/d2: P1 presents rt-1-0 (held); the operator installs a
/// fresh login N (expired access token); P2 redeems N, saves its answer
/// (claim N answered) and its write is held; P1's answer arrives, its write
/// finds N whose claim is answered and takes it for a regressed row; then
/// P2's write resumes.
async fn fresh_login_while_it_is_being_redeemed(rotates: bool) -> (HookedBackends, Arc<Grants>) {
    let b = hooked([expired_account(ID)]);
    let grants = Grants::new(rotates, &["rt-1-0"]);
    let exec: Arc<dyn RefreshExecutor> = grants.clone();
    let p1_upstream = grants.hold("rt-1-0");
    let (p1, p2) = (b.local_process(), b.local_process());

    let first = spawn_refresh(&p1, &b.stored(ID).await, &exec);
    grants.wait_for_calls(1).await;

    // The operator's fresh login: a new grant, never claimed.
    grants.login("N");
    operator_write(&b, &expired_creds("at-N", "N")).await;

    // P2 redeems N; its write (carrying N's answer) is held.
    let p2_answer_token = if rotates { "N+" } else { "N" };
    let (reached, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *hooks(&b).hold.lock().unwrap() = Some((
        p2_answer_token.to_owned(),
        Arc::clone(&reached),
        Arc::clone(&go),
    ));
    hooks(&b).fired.store(true, Ordering::SeqCst);
    let second = spawn_refresh(&p2, &b.stored(ID).await, &exec);
    reached.notified().await;
    assert_eq!(b.claim_state("N").await, Some(ClaimState::Answered));

    // P1's answer arrives.
    p1_upstream.notify_one();
    let out1 = first.await.unwrap();
    let _ = &out1;
    go.notify_one();
    let out2 = second.await.unwrap();
    let _ = &out2;
    (b, grants)
}

/// d1 (rotating): the operator's new grant N is redeemed (N → N+) while
/// P1's answer for the old grant is out. P1 reads N's *answered* claim as
/// "a redeemed token put back" and writes its old-grant token over N; P2
/// then reads P1's row as another writer's and drops N+. N+ was issued by
/// the upstream and is neither stored nor in an answered claim (claim N is
/// consumed, its answer cleared). Without P2's refresh, rule (d) lets the
/// operator's N stand, so the flow's choice of grant depends on a race.
#[tokio::test(start_paused = true)]
async fn d1_a_fresh_login_being_redeemed_is_overwritten_and_its_rotation_lost() {
    let (b, grants) = fresh_login_while_it_is_being_redeemed(true).await;
    let stored = rt_of(&b.stored(ID).await);
    let n_claim = b.claim_of("N").await;
    let n_plus_held = stored.as_deref() == Some("N+")
        || n_claim.as_ref().is_some_and(|c| {
            c.state == ClaimState::Answered
                && c.answer
                    .as_ref()
                    .and_then(Credentials::refresh_token)
                    .is_some_and(|t| t.expose() == "N+")
        });
    assert!(
        grants.is_valid("N+"),
        "the upstream issued N+ and it is live"
    );
    assert!(
        n_plus_held,
        "N+ (the operator's grant, rotated) is lost: row holds {stored:?}, claim N is {:?}",
        n_claim.map(|c| c.state)
    );
    assert_eq!(grants.reuses(), 0);
}

/// d2 (non-rotating): the same race with a keeping upstream. P1 writes the
/// old token rt-1-0 over the operator's newer N because N's claim reads
/// answered (a non-rotating redemption leaves the token valid: "answered"
/// is not "dead"); P2 then yields to it. The operator's fresh login is gone
/// from the row.
#[tokio::test(start_paused = true)]
async fn d2_non_rotating_answered_claim_is_not_a_dead_token() {
    let (b, _grants) = fresh_login_while_it_is_being_redeemed(false).await;
    let stored = rt_of(&b.stored(ID).await);
    assert_eq!(
        stored.as_deref(),
        Some("N"),
        "the flow replaced the operator's newer N with the older rt-1-0"
    );
}

/// r1 baseline for d1: with nobody redeeming N, the operator's fresh login
/// stands (rule d) and the live answer yields.
#[tokio::test(start_paused = true)]
async fn r1_a_fresh_login_during_a_write_stands() {
    let b = hooked([expired_account(ID)]);
    let grants = Grants::new(true, &["rt-1-0"]);
    let exec: Arc<dyn RefreshExecutor> = grants.clone();
    grants.login("N");
    *hooks(&b).before_first.lock().unwrap() = Some(expired_creds("at-N", "N"));
    let flow = b.local_process();
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::StillFresh { .. })),
        "{out:?}"
    );
    assert_eq!(rt_of(&b.stored(ID).await).as_deref(), Some("N"));
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert_eq!(grants.reuses(), 0);
}

/// An unrelated write (a project_id backfill) lands before the first write
/// attempt, so `write_once` reaches its claim reads.
fn backfill() -> Credentials {
    let mut c = expired_account(ID).credentials;
    c.insert("project_id", "p-9");
    c
}

/// r2: every claim read in `write_once` fails (the answer is saved): the
/// flow reports `NotPersisted { answer_saved: true }` — never Superseded —
/// and the next run applies the saved answer without a second call.
#[tokio::test(start_paused = true)]
async fn r2_claim_reads_failing_in_write_once_report_not_persisted_saved() {
    let b = hooked([expired_account(ID)]);
    *hooks(&b).before_first.lock().unwrap() = Some(backfill());
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    b.claims
        .faults
        .fail_next("get", 1_000, StorageErrorKind::Timeout);
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(
            out,
            Err(FlowError::NotPersisted {
                answer_saved: true,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Answered));
    b.claims.faults.heal();
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(out.is_ok(), "{out:?}");
    let stored = b.stored(ID).await;
    assert_eq!(
        rt_of(&stored),
        b.upstream.current_refresh_token(AccountId(ID))
    );
    assert_eq!(
        stored.credentials.get("project_id"),
        Some(&serde_json::json!("p-9"))
    );
    assert_eq!((b.upstream.calls(), b.upstream.reuses()), (1, 0));
}

/// r3: the save fails AND every claim read in `write_once` fails:
/// `NotPersisted { answer_saved: false }`; the rescue lands the answer over
/// the backfill once the claim store heals.
#[tokio::test(start_paused = true)]
async fn r3_claim_reads_and_save_failing_rescue_the_answer() {
    let b = hooked([expired_account(ID)]);
    *hooks(&b).before_first.lock().unwrap() = Some(backfill());
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    b.claims
        .faults
        .fail_next("save_answer", 1, StorageErrorKind::Unavailable);
    b.claims
        .faults
        .fail_next("get", 1_000, StorageErrorKind::Unavailable);
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(
            out,
            Err(FlowError::NotPersisted {
                answer_saved: false,
                ..
            })
        ),
        "{out:?}"
    );
    b.claims.faults.heal();
    let_time_pass(Duration::from_secs(60)).await;
    // The rescue put the answer into the claim (or the row); the next run
    // applies it without a second call.
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(out.is_ok(), "{out:?}");
    let stored = b.stored(ID).await;
    assert_eq!(
        rt_of(&stored),
        b.upstream.current_refresh_token(AccountId(ID))
    );
    assert_eq!(
        stored.credentials.get("project_id"),
        Some(&serde_json::json!("p-9"))
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    assert_eq!((b.upstream.calls(), b.upstream.reuses()), (1, 0));
}

/// r4: a claim read that hangs (longer than the storage timeout) in
/// `write_once` is an error, not "no claim": never Superseded.
#[tokio::test(start_paused = true)]
async fn r4_a_hanging_claim_read_is_not_no_claim() {
    struct Slow;
    #[async_trait]
    impl common::ClaimStoreHooks for Slow {
        async fn before(&self, op: &'static str) {
            if op == "get" {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
    }
    let b = hooked([expired_account(ID)]);
    *hooks(&b).before_first.lock().unwrap() = Some(backfill());
    let claims = common::HookedClaimStore::new(b.claims.clone(), Slow);
    let flow = b.process_over(
        claims,
        refresh_core::LockStrategy::process_local(),
        Arc::clone(&b.clock),
        refresh_core::FlowConfig::default(),
    );
    let exec = b.executor(Platform::Anthropic);
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(
            out,
            Err(FlowError::NotPersisted {
                answer_saved: true,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Answered));
}

/// r5 (non-rotating, rule e): an unrelated write during the call: the
/// live answer's new access token is re-applied over it, the token kept.
#[tokio::test(start_paused = true)]
async fn r5_non_rotating_answer_reapplied_over_a_backfill() {
    let b = hooked([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    *hooks(&b).before_first.lock().unwrap() = Some(backfill());
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let stored = b.stored(ID).await;
    assert_eq!(rt_of(&stored).as_deref(), Some("rt-1-0"));
    assert_eq!(common::access_token_of(&stored).as_deref(), Some("at-1-1"));
    assert_eq!(
        stored.credentials.get("project_id"),
        Some(&serde_json::json!("p-9"))
    );
    assert_eq!(b.claim_of("rt-1-0").await.map(|c| c.state), None);
}

/// r6 (non-rotating, rule c): a consumed old token re-imported during the
/// call: the live answer goes over it WITH the presented token.
#[tokio::test(start_paused = true)]
async fn r6_non_rotating_reapply_over_a_consumed_reimport_keeps_the_presented_token() {
    let b = hooked([expired_account(ID)]);
    b.upstream.keep_refresh_tokens();
    // An old token "OLD" whose generation is consumed.
    let (k, id) = (claim_key("OLD"), ClaimId::random());
    let claims = b.claims.inner();
    claims
        .acquire(&k, &id, AccountId(ID), 1, Duration::from_secs(900))
        .await
        .unwrap();
    claims
        .mark_consumed(&k, &id, Duration::from_secs(86_400))
        .await
        .unwrap();
    *hooks(&b).before_first.lock().unwrap() = Some(expired_creds("at-old", "OLD"));
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let stored = b.stored(ID).await;
    assert_eq!(rt_of(&stored).as_deref(), Some("rt-1-0"));
    assert_eq!(common::access_token_of(&stored).as_deref(), Some("at-1-1"));
}

/// d3: an old token whose claim is QUARANTINED (maybe consumed) is
/// re-imported while the live answer is out: rule (d) lets the live,
/// certainly valid answer yield to a token that may be dead, and the
/// presented generation is marked consumed. The live generation is lost.
#[tokio::test(start_paused = true)]
async fn d3_a_reimported_quarantined_token_makes_the_live_answer_yield() {
    let b = hooked([expired_account(ID)]);
    let (k, id) = (claim_key("Q"), ClaimId::random());
    let claims = b.claims.inner();
    claims
        .acquire(&k, &id, AccountId(ID), 1, Duration::from_secs(900))
        .await
        .unwrap();
    assert!(
        claims
            .quarantine(&k, &id, Duration::from_secs(600))
            .await
            .unwrap()
    );
    *hooks(&b).before_first.lock().unwrap() = Some(expired_creds("at-q", "Q"));
    let exec = b.executor(Platform::Anthropic);
    let flow = b.local_process();
    let _out = refresh_stored(&flow, &b, ID, &exec).await;
    let stored = rt_of(&b.stored(ID).await);
    assert_eq!(
        stored,
        b.upstream.current_refresh_token(AccountId(ID)),
        "the live generation is lost: the row holds the quarantined {stored:?}"
    );
}

/// d4 (rule b): the answer landed through a waiter applying it from the
/// claim (claim rt-1-0 consumed); the operator re-imports rt-1-0; nobody
/// redeemed rt-1-1 (no claim on it). The holder's delayed write finds the
/// presented token back and consumed and yields, though rule (a) just
/// showed its answer was never refreshed past: the row keeps the dead
/// rt-1-0 and every later run is `CredentialsRegressed`. (The model excuses
/// a re-import over the live generation; this records what is lost.)
#[tokio::test(start_paused = true)]
async fn d4_presented_token_reimported_after_landing_yields_though_answer_is_live() {
    let b = hooked([expired_account(ID)]);
    let exec = b.executor(Platform::Anthropic);
    let (p1, p2) = (b.local_process(), b.local_process());
    let (reached, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *hooks(&b).hold.lock().unwrap() =
        Some(("rt-1-1".to_owned(), Arc::clone(&reached), Arc::clone(&go)));
    hooks(&b).fired.store(true, Ordering::SeqCst);
    let first = spawn_refresh(&p1, &b.stored(ID).await, &exec);
    reached.notified().await;
    // A waiter elsewhere applies the saved answer from the claim.
    let out2 = refresh_stored(&p2, &b, ID, &exec).await;
    assert!(out2.is_ok(), "{out2:?}");
    assert_eq!(rt_of(&b.stored(ID).await).as_deref(), Some("rt-1-1"));
    assert_eq!(b.claim_state("rt-1-0").await, Some(ClaimState::Consumed));
    // The operator restores an old export.
    operator_write(&b, &expired_account(ID).credentials).await;
    go.notify_one();
    let _out1 = first.await.unwrap();
    assert_eq!(b.claim_of("rt-1-1").await.map(|c| c.state), None);
    assert_eq!(
        rt_of(&b.stored(ID).await).as_deref(),
        Some("rt-1-1"),
        "the holder had the live rt-1-1 and left the dead rt-1-0 in the row"
    );
}

/// r7 (rule a): our write committed but reported a timeout; before the
/// retry another process refreshes the stored answer past (rt-1-1 →
/// rt-1-2). The retry finds rt-1-1 claimed and yields: rt-1-1 is never
/// written back over rt-1-2.
#[tokio::test(start_paused = true)]
async fn r7_a_lost_write_answer_refreshed_past_is_not_written_back() {
    let b = hooked([expired_account(ID)]);
    hooks(&b).lose_first.store(true, Ordering::SeqCst);
    // Tokens live 60 s: always inside the 180 s window, so always due.
    let exec = common::anthropic_executor(&b.upstream, Duration::from_secs(60));
    let (p1, p2) = (b.local_process(), b.local_process());
    let first = spawn_refresh(&p1, &b.stored(ID).await, &exec);
    hooks(&b).lost.notified().await;
    assert_eq!(rt_of(&b.stored(ID).await).as_deref(), Some("rt-1-1"));
    let out2 = refresh_stored(&p2, &b, ID, &exec).await;
    assert!(
        matches!(out2, Ok(RefreshOutcome::Refreshed { .. })),
        "{out2:?}"
    );
    assert_eq!(rt_of(&b.stored(ID).await).as_deref(), Some("rt-1-2"));
    let out1 = first.await.unwrap();
    assert!(out1.is_ok(), "{out1:?}");
    assert_eq!(rt_of(&b.stored(ID).await).as_deref(), Some("rt-1-2"));
    assert_eq!((b.upstream.calls(), b.upstream.reuses()), (2, 0));
}

/// r8: two accounts importing one grant (the claim key ignores the
/// account): after A refreshes, B holding the same (now consumed) token
/// never presents it.
#[tokio::test(start_paused = true)]
async fn r8_two_accounts_sharing_one_token_present_it_once() {
    let a = expired_account(ID);
    let mut bee = expired_account(2);
    bee.credentials = a.credentials.clone();
    let b = Backends::new([a, bee]);
    let grants = Grants::new(true, &["rt-1-0"]);
    let exec: Arc<dyn RefreshExecutor> = grants.clone();
    let flow = b.local_process();
    let out = refresh_stored(&flow, &b, ID, &exec).await;
    assert!(
        matches!(out, Ok(RefreshOutcome::Refreshed { .. })),
        "{out:?}"
    );
    let out = refresh_stored(&flow, &b, 2, &exec).await;
    assert!(
        matches!(out, Err(FlowError::CredentialsRegressed { .. })),
        "{out:?}"
    );
    assert_eq!(grants.reuses(), 0);
    assert_eq!(*grants.calls.borrow(), 1);
}
