//! Conformance suite of [`ClaimStore`]: one check per clause of its
//! `# Contract` and of its methods' docs. Expiry is judged by the STORE's
//! clock only, so the suite lets time pass through the [`TimeHarness`] and
//! never compares instants itself; it reads lives as
//! [`Claim::remaining`].
//!
//! Checks, in the order they run:
//! `acquire_of_a_free_key_wins_with_a_fresh_random_id`,
//! `acquire_is_idempotent_for_the_holders_id`,
//! `a_second_acquirer_gets_the_live_claim_unchanged`,
//! `concurrent_acquirers_of_a_free_key_have_one_winner`,
//! `an_expired_empty_claim_is_taken_over_with_a_fresh_id`,
//! `a_quarantined_claim_blocks_until_it_expires`,
//! `an_answered_claim_never_expires_and_is_never_taken_over`,
//! `save_answer_stores_the_credentials_as_given`,
//! `a_consumed_claim_blocks_until_its_horizon_and_drops_the_answer`,
//! `operations_with_a_wrong_id_change_nothing`,
//! `the_holder_before_a_takeover_can_change_nothing`,
//! `extend_pushes_the_expiry_by_the_store_clock`,
//! `purge_deletes_what_is_over_and_never_an_answer`,
//! `purge_respects_its_limit`,
//! `keys_of_one_fingerprint_on_other_platforms_are_independent`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::TimeHarness;
use super::fixtures::T0;
use super::harness::{Checks, check, past};
use crate::domain::{AccountId, Credentials, Fingerprint, Platform};
use crate::ports::{Claim, ClaimAcquire, ClaimId, ClaimKey, ClaimState, ClaimStore};

type Store = Arc<dyn ClaimStore>;

/// The account whose flow takes the claims.
const HOLDER: AccountId = AccountId(1);
/// Another account holding the same grant (or the next flow).
const OTHER: AccountId = AccountId(2);

/// Runs every check (listed in the module docs), each on a fresh store from
/// `make` and under its own timeout; `time` lets the store's clock pass
/// (a check lets at most about five [`short_ttl`](TimeHarness::short_ttl)s
/// pass). Needs a tokio runtime with time enabled.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `claim_store_suite: <check>: <clause>`; with
/// `claim_store_suite: <check> timed out` when a call never returns.
pub async fn claim_store_suite<F, Fut>(make: F, time: &dyn TimeHarness)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ClaimStore>>,
{
    let ttl = time.short_ttl();
    let checks = Checks::with_time("claim_store_suite", time);
    check!(
        checks,
        acquire_of_a_free_key_wins_with_a_fresh_random_id(make().await, ttl)
    );
    check!(
        checks,
        a_second_acquirer_gets_the_live_claim_unchanged(make().await, ttl, time)
    );
    check!(
        checks,
        acquire_is_idempotent_for_the_holders_id(make().await, ttl)
    );
    check!(
        checks,
        concurrent_acquirers_of_a_free_key_have_one_winner(make().await, ttl)
    );
    check!(
        checks,
        an_expired_empty_claim_is_taken_over_with_a_fresh_id(make().await, ttl, time)
    );
    check!(
        checks,
        a_quarantined_claim_blocks_until_it_expires(make().await, ttl, time)
    );
    check!(
        checks,
        an_answered_claim_never_expires_and_is_never_taken_over(make().await, ttl, time)
    );
    check!(
        checks,
        save_answer_stores_the_credentials_as_given(make().await, ttl)
    );
    check!(
        checks,
        a_consumed_claim_blocks_until_its_horizon_and_drops_the_answer(make().await, ttl, time)
    );
    check!(
        checks,
        operations_with_a_wrong_id_change_nothing(make().await, ttl)
    );
    check!(
        checks,
        the_holder_before_a_takeover_can_change_nothing(make().await, ttl, time)
    );
    check!(
        checks,
        extend_pushes_the_expiry_by_the_store_clock(make().await, ttl, time)
    );
    check!(
        checks,
        purge_deletes_what_is_over_and_never_an_answer(make().await, ttl, time)
    );
    check!(checks, purge_respects_its_limit(make().await, ttl, time));
    check!(
        checks,
        keys_of_one_fingerprint_on_other_platforms_are_independent(make().await, ttl)
    );
}

/// The key of the `n`-th generation of the suite, on Anthropic.
fn key(n: u32) -> ClaimKey {
    ClaimKey::new(
        Platform::Anthropic,
        Fingerprint::of_bytes(format!("conformance-rt-{n}").as_bytes()),
    )
}

/// An answer with every kind of JSON value, to round-trip.
fn answer() -> Credentials {
    Credentials::new()
        .with("access_token", "at-answer-ünïcode-✓")
        .with("refresh_token", "rt-answer")
        .with("expires_at", (T0 + 3600).to_string())
        .with("expires_in", 3600)
        .with("scope", "user:inference user:profile")
        .with("intercept_warmup_requests", true)
        .with("ratio", 0.5)
        .with("account", json!({"uuid": "u-1", "tags": ["a", "b"]}))
        .with("id_token", serde_json::Value::Null)
        .with("empty", "")
}

/// The claim of a fresh holding, as `get` shows it apart from its life.
fn holding(key: &ClaimKey, id: &ClaimId, account: AccountId, base_version: u64) -> Claim {
    Claim {
        key: key.clone(),
        id: id.clone(),
        account_id: account,
        base_version,
        state: ClaimState::Open,
        answer: None,
        remaining: None,
    }
}

/// `claim` without its remaining life, which moves with the store's clock.
fn at_rest(claim: &Claim) -> Claim {
    Claim {
        remaining: None,
        ..claim.clone()
    }
}

/// Acquires `key`, which must be free (or taken over); panics naming `what`.
async fn won(
    store: &Store,
    key: &ClaimKey,
    account: AccountId,
    base_version: u64,
    ttl: Duration,
    what: &str,
) -> ClaimId {
    match store
        .acquire(key, &ClaimId::random(), account, base_version, ttl)
        .await
        .expect("acquire")
    {
        ClaimAcquire::Won(id) => id,
        ClaimAcquire::Existing(claim) => panic!("{what}: expected Won, got Existing({claim:?})"),
    }
}

/// Acquires `key`, which must be held; panics naming `what`.
async fn existing(
    store: &Store,
    key: &ClaimKey,
    account: AccountId,
    ttl: Duration,
    what: &str,
) -> Claim {
    match store
        .acquire(key, &ClaimId::random(), account, 0, ttl)
        .await
        .expect("acquire")
    {
        ClaimAcquire::Existing(claim) => claim,
        ClaimAcquire::Won(id) => panic!("{what}: expected Existing, got Won({id:?})"),
    }
}

/// The claim of `key`, which must exist.
async fn claim_of(store: &Store, key: &ClaimKey) -> Claim {
    store
        .get(key)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("the claim of {key} must exist"))
}

/// Asserts that `remaining` is a live span of at most `ttl`.
fn assert_life(remaining: Option<Duration>, ttl: Duration, what: &str) {
    let left = remaining.unwrap_or_else(|| panic!("{what}: expected a remaining life, got None"));
    assert!(
        !left.is_zero() && left <= ttl,
        "{what}: remaining life {left:?} must be in (0, {ttl:?}]"
    );
}

/// The id-fenced operations.
#[derive(Debug, Clone, Copy)]
enum Op {
    Extend,
    Quarantine,
    SaveAnswer,
    MarkConsumed,
    Remove,
}

impl Op {
    const ALL: [Self; 5] = [
        Self::Extend,
        Self::Quarantine,
        Self::SaveAnswer,
        Self::MarkConsumed,
        Self::Remove,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Extend => "extend",
            Self::Quarantine => "quarantine",
            Self::SaveAnswer => "save_answer",
            Self::MarkConsumed => "mark_consumed",
            Self::Remove => "remove",
        }
    }

    /// Runs the operation on `key` as holder `id`; what it returned.
    async fn apply(self, store: &Store, key: &ClaimKey, id: &ClaimId, ttl: Duration) -> bool {
        let intruder = Credentials::new().with("access_token", "at-intruder");
        match self {
            Self::Extend => store.extend(key, id, ttl * 4).await,
            Self::Quarantine => store.quarantine(key, id, ttl * 4).await,
            Self::SaveAnswer => store.save_answer(key, id, &intruder).await,
            Self::MarkConsumed => store.mark_consumed(key, id, ttl * 4).await,
            Self::Remove => store.remove(key, id).await,
        }
        .unwrap_or_else(|e| panic!("{}: {e}", self.name()))
    }
}

/// Asserts that every id-fenced operation as `id` returns `Ok(false)` and
/// leaves the claim of `key` (or its absence) as it was, its life included.
async fn refuses_every_op(store: &Store, key: &ClaimKey, id: &ClaimId, ttl: Duration, what: &str) {
    let before = store.get(key).await.expect("get");
    for op in Op::ALL {
        let op_name = op.name();
        assert!(
            !op.apply(store, key, id, ttl).await,
            "{what}: {op_name} must return Ok(false)"
        );
        let after = store.get(key).await.expect("get");
        assert_eq!(
            after.as_ref().map(at_rest),
            before.as_ref().map(at_rest),
            "{what}: {op_name} must change nothing"
        );
        let lives = (
            before.as_ref().and_then(|c| c.remaining),
            after.as_ref().and_then(|c| c.remaining),
        );
        assert!(
            match lives {
                (Some(was), Some(is)) => is <= was,
                (was, is) => was.is_none() && is.is_none(),
            },
            "{what}: {op_name} must not change the claim's life ({lives:?})"
        );
    }
}

async fn acquire_of_a_free_key_wins_with_a_fresh_random_id(store: Store, ttl: Duration) {
    let k = key(1);
    assert_eq!(
        store.get(&k).await.expect("get"),
        None,
        "a free key has no claim"
    );
    let id = won(
        &store,
        &k,
        HOLDER,
        7,
        ttl,
        "the first acquire of a free key",
    )
    .await;
    assert!(!id.as_str().is_empty(), "the claim id is not empty");
    let claim = claim_of(&store, &k).await;
    assert_eq!(
        at_rest(&claim),
        holding(&k, &id, HOLDER, 7),
        "get shows the new open holding"
    );
    assert_life(claim.remaining, ttl, "a new claim");
    let mut ids = HashSet::from([id]);
    for n in 2..=9 {
        let id = won(
            &store,
            &key(n),
            HOLDER,
            0,
            ttl,
            "an acquire of another free key",
        )
        .await;
        assert!(
            ids.insert(id.clone()),
            "claim id {id:?} was handed out twice"
        );
    }
}

async fn acquire_is_idempotent_for_the_holders_id(store: Store, ttl: Duration) {
    let k = key(1);
    let id = ClaimId::random();
    let first = store
        .acquire(&k, &id, HOLDER, 3, ttl)
        .await
        .expect("acquire");
    assert_eq!(
        first,
        ClaimAcquire::Won(id.clone()),
        "the holding has the caller's id"
    );
    let before = claim_of(&store, &k).await;
    let again = store
        .acquire(&k, &id, HOLDER, 3, ttl)
        .await
        .expect("acquire");
    assert_eq!(
        again,
        ClaimAcquire::Won(id.clone()),
        "a retry with the holder's id (its first answer lost) wins again"
    );
    let after = claim_of(&store, &k).await;
    assert_eq!(
        at_rest(&after),
        at_rest(&before),
        "the retry changed nothing"
    );
    assert!(
        after.remaining <= before.remaining,
        "the retry did not extend the claim"
    );
    assert!(
        matches!(
            store.acquire(&k, &ClaimId::random(), OTHER, 3, ttl).await.expect("acquire"),
            ClaimAcquire::Existing(ref c) if c.id == id
        ),
        "another id gets the holder's claim"
    );
    assert!(store.quarantine(&k, &id, ttl).await.expect("quarantine"));
    assert!(
        matches!(
            store.acquire(&k, &id, HOLDER, 3, ttl).await.expect("acquire"),
            ClaimAcquire::Existing(ref c) if c.state == ClaimState::Quarantined
        ),
        "the holder's id does not win back a quarantined claim"
    );
}

async fn a_second_acquirer_gets_the_live_claim_unchanged(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    // The second acquirer asks with a 1 ms ttl half-way through the
    // holder's: only the holder's ttl, on the store's clock, decides.
    let k = key(1);
    let id = won(&store, &k, HOLDER, 7, ttl, "the first acquire").await;
    time.advance(ttl / 2).await;
    let seen = existing(
        &store,
        &k,
        OTHER,
        Duration::from_millis(1),
        "an acquire of a live claim",
    )
    .await;
    assert_eq!(
        at_rest(&seen),
        holding(&k, &id, HOLDER, 7),
        "the holder's claim"
    );
    assert_life(seen.remaining, ttl - ttl / 4, "half-way through the ttl");
    assert_eq!(
        at_rest(&claim_of(&store, &k).await),
        holding(&k, &id, HOLDER, 7),
        "the failed acquire changed nothing"
    );
}

async fn concurrent_acquirers_of_a_free_key_have_one_winner(store: Store, ttl: Duration) {
    let k = key(1);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, k) = (Arc::clone(&store), k.clone());
            tokio::spawn(async move {
                store
                    .acquire(&k, &ClaimId::random(), AccountId(i), 0, ttl)
                    .await
            })
        })
        .collect();
    let (mut winners, mut holders) = (Vec::new(), HashSet::new());
    for t in tasks {
        match t.await.expect("join").expect("acquire") {
            ClaimAcquire::Won(id) => winners.push(id),
            ClaimAcquire::Existing(claim) => {
                holders.insert(claim.id);
            }
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "16 concurrent acquirers: winners {winners:?}"
    );
    assert!(
        holders.iter().all(|id| *id == winners[0]),
        "every loser saw the winner's claim ({holders:?} vs {winners:?})"
    );
    assert_eq!(
        claim_of(&store, &k).await.id,
        winners[0],
        "the winner holds it"
    );
}

async fn an_expired_empty_claim_is_taken_over_with_a_fresh_id(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key(1);
    let old = won(&store, &k, HOLDER, 1, ttl, "the first acquire").await;
    time.advance(past(ttl)).await;
    let new = won(
        &store,
        &k,
        OTHER,
        2,
        ttl,
        "an acquire of an open claim expired by the store's clock",
    )
    .await;
    assert_ne!(old, new, "the takeover gets a fresh id");
    let claim = claim_of(&store, &k).await;
    assert_eq!(
        at_rest(&claim),
        holding(&k, &new, OTHER, 2),
        "the claim is the new holder's"
    );
    assert_life(claim.remaining, ttl, "the new holding");
}

async fn a_quarantined_claim_blocks_until_it_expires(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key(1);
    let id = won(&store, &k, HOLDER, 0, ttl, "the first acquire").await;
    assert!(
        store.quarantine(&k, &id, ttl).await.expect("quarantine"),
        "the holder quarantines its open claim"
    );
    let quarantined = Claim {
        state: ClaimState::Quarantined,
        ..holding(&k, &id, HOLDER, 0)
    };
    let seen = existing(&store, &k, OTHER, ttl, "an acquire of a quarantined claim").await;
    assert_eq!(at_rest(&seen), quarantined, "the quarantined claim");
    assert_life(seen.remaining, ttl, "the quarantine");
    assert!(
        !store.extend(&k, &id, ttl * 4).await.expect("extend"),
        "a quarantined claim is not open: extend returns Ok(false)"
    );
    assert!(
        !store
            .quarantine(&k, &id, ttl * 4)
            .await
            .expect("quarantine"),
        "a quarantined claim is not open: quarantine returns Ok(false)"
    );
    time.advance(ttl / 2).await;
    existing(&store, &k, OTHER, ttl, "half-way through the quarantine").await;
    time.advance(past(ttl) - ttl / 2).await;
    let next = won(&store, &k, OTHER, 0, ttl, "an acquire after the quarantine").await;
    assert_ne!(next, id, "the takeover gets a fresh id");
}

async fn an_answered_claim_never_expires_and_is_never_taken_over(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key(1);
    let id = won(&store, &k, HOLDER, 3, ttl, "the first acquire").await;
    assert!(
        store
            .save_answer(&k, &id, &answer())
            .await
            .expect("save_answer"),
        "the holder saves an answer"
    );
    let answered = Claim {
        state: ClaimState::Answered,
        answer: Some(answer()),
        ..holding(&k, &id, HOLDER, 3)
    };
    let claim = claim_of(&store, &k).await;
    assert_eq!(at_rest(&claim), answered, "the answered claim");
    assert_eq!(
        claim.remaining, None,
        "an answered claim has no remaining life"
    );
    time.advance(ttl * 4).await;
    let seen = existing(
        &store,
        &k,
        OTHER,
        ttl,
        "an acquire four ttls after the answer",
    )
    .await;
    assert_eq!(seen, answered, "the answered claim, still without a life");
    assert_eq!(
        store.purge(100).await.expect("purge"),
        0,
        "purge deletes no answer"
    );
    for op in [Op::Extend, Op::Quarantine] {
        assert!(
            !op.apply(&store, &k, &id, ttl).await,
            "an answered claim is not open: {} returns Ok(false)",
            op.name()
        );
    }
    assert_eq!(
        claim_of(&store, &k).await,
        answered,
        "the claim is unchanged, without a life"
    );
}

async fn save_answer_stores_the_credentials_as_given(store: Store, ttl: Duration) {
    let k = key(1);
    let id = won(&store, &k, HOLDER, 0, ttl, "the first acquire").await;
    assert!(
        store
            .save_answer(&k, &id, &answer())
            .await
            .expect("save_answer"),
        "the holder saves an answer"
    );
    let stored = claim_of(&store, &k).await.answer.expect("an answer");
    assert_eq!(
        stored.as_map(),
        answer().as_map(),
        "every key and value round-trips"
    );
    let retried = answer().with("access_token", "at-retry");
    assert!(
        store
            .save_answer(&k, &id, &retried)
            .await
            .expect("save_answer"),
        "saving again (a retry) is accepted"
    );
    assert_eq!(
        claim_of(&store, &k).await.answer,
        Some(retried),
        "the retry's answer replaces the first"
    );
    let late = key(2);
    let id = won(&store, &late, HOLDER, 0, ttl, "the first acquire").await;
    store.quarantine(&late, &id, ttl).await.expect("quarantine");
    assert!(
        store
            .save_answer(&late, &id, &answer())
            .await
            .expect("save_answer"),
        "a quarantined claim takes an answer"
    );
    let claim = claim_of(&store, &late).await;
    assert_eq!(
        (claim.state, claim.remaining),
        (ClaimState::Answered, None),
        "a quarantined claim with an answer is answered and never expires"
    );
}

async fn a_consumed_claim_blocks_until_its_horizon_and_drops_the_answer(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let keep = ttl * 2;
    let k = key(1);
    let id = won(&store, &k, HOLDER, 0, ttl, "the first acquire").await;
    store
        .save_answer(&k, &id, &answer())
        .await
        .expect("save_answer");
    assert!(
        store
            .mark_consumed(&k, &id, keep)
            .await
            .expect("mark_consumed"),
        "the holder marks its answered claim consumed"
    );
    let consumed = Claim {
        state: ClaimState::Consumed,
        ..holding(&k, &id, HOLDER, 0)
    };
    let claim = claim_of(&store, &k).await;
    assert_eq!(at_rest(&claim), consumed, "consumed, the answer dropped");
    assert_life(claim.remaining, keep, "the horizon");
    time.advance(past(ttl)).await;
    let seen = existing(&store, &k, OTHER, ttl, "an acquire within the horizon").await;
    assert_eq!(at_rest(&seen), consumed, "the consumed claim");
    for op in [Op::Extend, Op::Quarantine, Op::SaveAnswer] {
        assert!(
            !op.apply(&store, &k, &id, ttl).await,
            "a consumed claim refuses {}",
            op.name()
        );
    }
    assert_eq!(
        at_rest(&claim_of(&store, &k).await),
        consumed,
        "the consumed claim is unchanged"
    );
    // The upstream declared the generation dead: an open claim is marked
    // consumed directly.
    let dead = key(2);
    let id = won(&store, &dead, HOLDER, 0, ttl, "the first acquire").await;
    assert!(
        store
            .mark_consumed(&dead, &id, keep)
            .await
            .expect("mark_consumed"),
        "the holder marks its open claim consumed"
    );
    assert_eq!(
        claim_of(&store, &dead).await.state,
        ClaimState::Consumed,
        "an open claim marked consumed"
    );
}

async fn operations_with_a_wrong_id_change_nothing(store: Store, ttl: Duration) {
    let k = key(1);
    let wrong = ClaimId::random();
    let id = won(&store, &k, HOLDER, 0, ttl, "the first acquire").await;
    refuses_every_op(&store, &k, &wrong, ttl, "a wrong id on an open claim").await;
    store
        .save_answer(&k, &id, &answer())
        .await
        .expect("save_answer");
    refuses_every_op(&store, &k, &wrong, ttl, "a wrong id on an answered claim").await;
    refuses_every_op(&store, &key(2), &wrong, ttl, "any id on a free key").await;
}

async fn the_holder_before_a_takeover_can_change_nothing(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key(1);
    let old = won(&store, &k, HOLDER, 0, ttl, "the first acquire").await;
    time.advance(past(ttl)).await;
    let new = won(&store, &k, OTHER, 1, ttl, "the takeover").await;
    refuses_every_op(&store, &k, &old, ttl, "the holder before the takeover").await;
    assert_eq!(
        at_rest(&claim_of(&store, &k).await),
        holding(&k, &new, OTHER, 1),
        "the claim is the new holder's"
    );
}

async fn extend_pushes_the_expiry_by_the_store_clock(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let k = key(1);
    let id = won(&store, &k, HOLDER, 0, ttl, "the first acquire").await;
    time.advance(ttl / 2).await;
    assert!(
        store.extend(&k, &id, ttl).await.expect("extend"),
        "the holder extends its open claim"
    );
    let left = claim_of(&store, &k).await.remaining;
    assert!(
        left.is_some_and(|left| left > ttl * 3 / 4 && left <= ttl),
        "an extended claim lives a ttl from the store's now (remaining {left:?})"
    );
    time.advance(ttl * 3 / 4).await;
    existing(
        &store,
        &k,
        OTHER,
        ttl,
        "1.25 ttl after the acquire, 0.75 after the extend",
    )
    .await;
    time.advance(past(ttl / 4)).await;
    won(
        &store,
        &k,
        OTHER,
        0,
        ttl,
        "an acquire after the extension lapsed",
    )
    .await;
}

async fn purge_deletes_what_is_over_and_never_an_answer(
    store: Store,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let [
        expired,
        expired_quarantine,
        consumed_over,
        answered,
        consumed_kept,
        live,
        quarantined,
    ] = [1, 2, 3, 4, 5, 6, 7].map(key);
    won(&store, &expired, HOLDER, 0, ttl, "acquire").await;
    let id = won(&store, &expired_quarantine, HOLDER, 0, ttl, "acquire").await;
    store
        .quarantine(&expired_quarantine, &id, ttl)
        .await
        .expect("quarantine");
    let id = won(&store, &consumed_over, HOLDER, 0, ttl, "acquire").await;
    store
        .mark_consumed(&consumed_over, &id, ttl)
        .await
        .expect("mark_consumed");
    let id = won(&store, &answered, HOLDER, 0, ttl, "acquire").await;
    store
        .save_answer(&answered, &id, &answer())
        .await
        .expect("save_answer");
    let id = won(&store, &consumed_kept, HOLDER, 0, ttl, "acquire").await;
    store
        .mark_consumed(&consumed_kept, &id, ttl * 10)
        .await
        .expect("mark_consumed");
    time.advance(past(ttl)).await;
    won(&store, &live, HOLDER, 0, ttl, "acquire").await;
    let id = won(&store, &quarantined, HOLDER, 0, ttl, "acquire").await;
    store
        .quarantine(&quarantined, &id, ttl)
        .await
        .expect("quarantine");

    assert_eq!(
        store.purge(100).await.expect("purge"),
        3,
        "purge deletes the expired open and quarantined claims and the consumed one past its horizon"
    );
    for (what, k) in [
        ("an expired open claim", &expired),
        ("an expired quarantined claim", &expired_quarantine),
        ("a consumed claim past its horizon", &consumed_over),
    ] {
        assert_eq!(store.get(k).await.expect("get"), None, "{what} is deleted");
    }
    for (what, k) in [
        ("an answered claim", &answered),
        ("a consumed claim within its horizon", &consumed_kept),
        ("a live claim", &live),
        ("a quarantined claim within its quarantine", &quarantined),
    ] {
        assert!(store.get(k).await.expect("get").is_some(), "{what} is kept");
    }
    assert_eq!(
        store.purge(100).await.expect("purge"),
        0,
        "nothing more is over"
    );
}

async fn purge_respects_its_limit(store: Store, ttl: Duration, time: &dyn TimeHarness) {
    for n in 1..=3 {
        won(&store, &key(n), HOLDER, 0, ttl, "acquire").await;
    }
    time.advance(past(ttl)).await;
    for (limit, deleted) in [(0, 0), (2, 2), (2, 1), (2, 0)] {
        assert_eq!(
            store.purge(limit).await.expect("purge"),
            deleted,
            "purge({limit}) over the expired claims left"
        );
    }
    for n in 1..=3 {
        assert_eq!(
            store.get(&key(n)).await.expect("get"),
            None,
            "claim {n} is deleted"
        );
    }
}

async fn keys_of_one_fingerprint_on_other_platforms_are_independent(store: Store, ttl: Duration) {
    let fingerprint = Fingerprint::of_bytes(b"conformance-shared-rt");
    let [anthropic, openai, plugin] = [
        Platform::Anthropic,
        Platform::OpenAi,
        Platform::Other("conformance-plugin".into()),
    ]
    .map(|platform| ClaimKey::new(platform, fingerprint));
    let a = won(
        &store,
        &anthropic,
        HOLDER,
        0,
        ttl,
        "the fingerprint on anthropic",
    )
    .await;
    let b = won(
        &store,
        &openai,
        HOLDER,
        0,
        ttl,
        "the same fingerprint on openai",
    )
    .await;
    let c = won(
        &store,
        &plugin,
        HOLDER,
        0,
        ttl,
        "the same fingerprint on a plugin",
    )
    .await;
    assert!(a != b && b != c && a != c, "three holdings, three ids");
    assert!(
        !store.remove(&openai, &a).await.expect("remove"),
        "one platform's id does not act on another's claim"
    );
    store
        .save_answer(&anthropic, &a, &answer())
        .await
        .expect("save_answer");
    assert!(
        store.remove(&openai, &b).await.expect("remove"),
        "the openai holder removes its claim"
    );
    assert_eq!(
        claim_of(&store, &anthropic).await.state,
        ClaimState::Answered,
        "the anthropic claim keeps its answer"
    );
    assert_eq!(
        at_rest(&claim_of(&store, &plugin).await),
        holding(&plugin, &c, HOLDER, 0),
        "the plugin's claim is untouched"
    );
    assert_eq!(
        store.get(&openai).await.expect("get"),
        None,
        "the openai claim is gone"
    );
}
