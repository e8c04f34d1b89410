//! Conformance suite of [`LoginSessionStore`]: one check per clause of its
//! `# Contract`.
//!
//! Checks, in the order they run: `take_of_an_unknown_id_is_absent`,
//! `put_then_take_returns_it_once`, `the_payload_comes_back_byte_for_byte`,
//! `a_used_id_is_refused_and_the_first_kept`,
//! `put_returns_the_expiry_by_the_store_clock`,
//! `an_expired_session_is_never_taken`,
//! `concurrent_takes_have_one_winner`, `purge_deletes_only_expired`,
//! `invalid_ids_are_refused_or_absent`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::TimeHarness;
use super::harness::{Checks, check, past};
use crate::domain::Platform;
use crate::error::StorageErrorKind;
use crate::ports::{LoginSessionStore, LoginTake, PendingLogin};

/// How many takes race in `concurrent_takes_have_one_winner`.
const RACERS: usize = 16;

fn login(id: &str, payload: &str) -> PendingLogin {
    PendingLogin {
        id: id.to_owned(),
        platform: Platform::OpenAi,
        payload: payload.into(),
    }
}

/// A session id no other check (or run, on a shared database) uses.
fn fresh(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// A TTL no check outlives.
const LONG: Duration = Duration::from_secs(15 * 60);

/// Runs every check (listed in the module docs), each on a fresh store
/// from `make` and under its own timeout; `time` lets TTLs pass. Needs a
/// tokio runtime with time enabled.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `login_session_store_suite: <check>: <clause>`; with
/// `login_session_store_suite: <check> timed out` when a call never
/// returns.
pub async fn login_session_store_suite<F, Fut>(make: F, time: &dyn TimeHarness)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LoginSessionStore>>,
{
    let ttl = time.short_ttl();
    let checks = Checks::with_time("login_session_store_suite", time);
    check!(checks, take_of_an_unknown_id_is_absent(make().await));
    check!(checks, put_then_take_returns_it_once(make().await));
    check!(checks, the_payload_comes_back_byte_for_byte(make().await));
    check!(
        checks,
        a_used_id_is_refused_and_the_first_kept(make().await)
    );
    check!(
        checks,
        put_returns_the_expiry_by_the_store_clock(make().await)
    );
    check!(
        checks,
        an_expired_session_is_never_taken(make().await, ttl, time)
    );
    check!(checks, concurrent_takes_have_one_winner(make().await));
    check!(checks, purge_deletes_only_expired(make().await, ttl, time));
    check!(checks, invalid_ids_are_refused_or_absent(make().await));
}

async fn take_of_an_unknown_id_is_absent(store: Arc<dyn LoginSessionStore>) {
    assert_eq!(
        store.take(&fresh("unknown")).await.expect("take"),
        LoginTake::Absent,
        "an unknown id is Absent, not an error"
    );
}

async fn put_then_take_returns_it_once(store: Arc<dyn LoginSessionStore>) {
    let id = fresh("once");
    let stored = login(&id, r#"{"state":"s","code_verifier":"v"}"#);
    store.put(&stored, LONG).await.expect("put");
    assert_eq!(
        store.take(&id).await.expect("take"),
        LoginTake::Taken(stored),
        "the first take returns the session as put"
    );
    assert_eq!(
        store.take(&id).await.expect("second take"),
        LoginTake::Absent,
        "a session is taken once"
    );
}

async fn the_payload_comes_back_byte_for_byte(store: Arc<dyn LoginSessionStore>) {
    let id = fresh("bytes");
    let payload = format!(
        "{{\"k\":\"é ü 你好 \\\" ' ; -- \\n {}\"}}",
        "x".repeat(8 * 1024)
    );
    let mut stored = login(&id, &payload);
    stored.platform = "acme-plugin".parse().expect("a plugin platform");
    store.put(&stored, LONG).await.expect("put");
    let LoginTake::Taken(back) = store.take(&id).await.expect("take") else {
        panic!("the session is taken");
    };
    assert_eq!(back.payload.expose(), payload, "the payload round-trips");
    assert_eq!(back.platform, stored.platform, "the platform round-trips");
    assert_eq!(back.id, id, "the id round-trips");
}

async fn a_used_id_is_refused_and_the_first_kept(store: Arc<dyn LoginSessionStore>) {
    let id = fresh("dup");
    store.put(&login(&id, "first"), LONG).await.expect("put");
    let error = store
        .put(&login(&id, "second"), LONG)
        .await
        .expect_err("a second put of one id fails");
    assert_eq!(error.kind(), StorageErrorKind::Conflict, "it is a Conflict");
    let LoginTake::Taken(back) = store.take(&id).await.expect("take") else {
        panic!("the first session is still stored");
    };
    assert_eq!(back.payload.expose(), "first", "the first session is kept");
}

async fn put_returns_the_expiry_by_the_store_clock(store: Arc<dyn LoginSessionStore>) {
    let ten_minutes = Duration::from_secs(600);
    let short = store
        .put(&login(&fresh("exp-a"), "a"), LONG)
        .await
        .expect("put a");
    let long = store
        .put(&login(&fresh("exp-b"), "b"), LONG + ten_minutes)
        .await
        .expect("put b");
    let gap = (long - short).num_milliseconds();
    assert!(
        (598_000..=602_000).contains(&gap),
        "two puts moments apart expire their TTLs apart ({gap} ms, expected ~600000)"
    );
}

async fn an_expired_session_is_never_taken(
    store: Arc<dyn LoginSessionStore>,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let id = fresh("expired");
    store.put(&login(&id, "p"), ttl).await.expect("put");
    time.advance(past(ttl)).await;
    assert_eq!(
        store.take(&id).await.expect("take"),
        LoginTake::Expired,
        "a take after the ttl is Expired"
    );
    assert_eq!(
        store.take(&id).await.expect("take again"),
        LoginTake::Absent,
        "an expired session is removed by its take"
    );
}

async fn concurrent_takes_have_one_winner(store: Arc<dyn LoginSessionStore>) {
    let id = fresh("race");
    store.put(&login(&id, "p"), LONG).await.expect("put");
    let takes = (0..RACERS).map(|_| {
        let store = Arc::clone(&store);
        let id = id.clone();
        tokio::spawn(async move { store.take(&id).await })
    });
    let mut taken = 0;
    for result in join_all(takes).await {
        match result.expect("take task").expect("take") {
            LoginTake::Taken(_) => taken += 1,
            LoginTake::Absent => {}
            LoginTake::Expired => panic!("a live session is not Expired"),
        }
    }
    assert_eq!(taken, 1, "exactly one of {RACERS} concurrent takes wins");
}

async fn purge_deletes_only_expired(
    store: Arc<dyn LoginSessionStore>,
    ttl: Duration,
    time: &dyn TimeHarness,
) {
    let (old, live) = (fresh("old"), fresh("live"));
    store.put(&login(&old, "o"), ttl).await.expect("put old");
    store.put(&login(&live, "l"), LONG).await.expect("put live");
    time.advance(past(ttl)).await;
    assert_eq!(
        store.purge(0).await.expect("purge 0"),
        0,
        "limit 0 purges nothing"
    );
    let mut purged = 0;
    for _ in 0..1000 {
        let n = store.purge(100).await.expect("purge");
        purged += n;
        if n == 0 {
            break;
        }
    }
    assert!(purged >= 1, "the expired session is purged");
    assert_eq!(
        store.take(&old).await.expect("take old"),
        LoginTake::Absent,
        "a purged session is gone"
    );
    assert!(
        matches!(
            store.take(&live).await.expect("take live"),
            LoginTake::Taken(_)
        ),
        "a live session survives the purge"
    );
}

async fn invalid_ids_are_refused_or_absent(store: Arc<dyn LoginSessionStore>) {
    for id in [String::new(), "x".repeat(65), "has space".to_owned()] {
        let error = store
            .put(&login(&id, "p"), LONG)
            .await
            .expect_err("an invalid id is refused");
        assert_eq!(
            error.kind(),
            StorageErrorKind::InvalidData,
            "an invalid id is InvalidData"
        );
        assert_eq!(
            store.take(&id).await.expect("take"),
            LoginTake::Absent,
            "an invalid id is Absent"
        );
    }
}
