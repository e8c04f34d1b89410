//! Conformance suite of [`RefreshEventLog`]: one check per clause of its
//! `# Contract`. Event times are fixed instants around [`T0`]; no backend
//! time passes.
//!
//! Checks, in the order they run:
//! `an_appended_event_reads_back_with_every_field`,
//! `recent_is_per_account_newest_first_and_bounded`,
//! `events_of_one_instant_read_back_latest_appended_first`,
//! `long_names_are_cut_to_the_limit`,
//! `latest_is_the_newest_of_each_account_asked`,
//! `hourly_counts_by_hour_platform_and_outcome_since_a_time`,
//! `purge_deletes_only_older_events_oldest_first_up_to_its_limit`,
//! `purge_excess_keeps_the_newest_of_each_account`,
//! `concurrent_appends_are_all_kept`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::fixtures::T0;
use super::harness::{Checks, check};
use crate::domain::{AccountId, Platform};
use crate::ports::{HourlyCount, MAX_EVENT_NAME_CHARS, RefreshEvent, RefreshEventLog};

type Log = Arc<dyn RefreshEventLog>;

/// Runs every check (listed in the module docs), each on a fresh, empty log
/// from `make` and under its own timeout. Needs a tokio runtime.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `refresh_event_log_suite: <check>: <clause>`.
pub async fn refresh_event_log_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RefreshEventLog>>,
{
    let checks = Checks::new("refresh_event_log_suite");
    check!(
        checks,
        an_appended_event_reads_back_with_every_field(make().await)
    );
    check!(
        checks,
        recent_is_per_account_newest_first_and_bounded(make().await)
    );
    check!(
        checks,
        events_of_one_instant_read_back_latest_appended_first(make().await)
    );
    check!(checks, long_names_are_cut_to_the_limit(make().await));
    check!(
        checks,
        latest_is_the_newest_of_each_account_asked(make().await)
    );
    check!(
        checks,
        hourly_counts_by_hour_platform_and_outcome_since_a_time(make().await)
    );
    check!(
        checks,
        purge_deletes_only_older_events_oldest_first_up_to_its_limit(make().await)
    );
    check!(
        checks,
        purge_excess_keeps_the_newest_of_each_account(make().await)
    );
    check!(checks, concurrent_appends_are_all_kept(make().await));
}

/// [`T0`] plus `secs` seconds and `ms` milliseconds.
fn at(secs: i64, ms: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + secs, ms * 1_000_000).expect("in range")
}

fn event(account: i64, secs: i64, outcome: &str) -> RefreshEvent {
    RefreshEvent {
        account_id: AccountId(account),
        platform: Platform::Anthropic,
        at: at(secs, 0),
        outcome: outcome.to_owned(),
        duration: Duration::from_millis(120),
        lock_layer: Some("database".to_owned()),
        attempts: 1,
    }
}

async fn append(log: &Log, event: &RefreshEvent) {
    log.append(event).await.expect("append");
}

async fn an_appended_event_reads_back_with_every_field(log: Log) {
    let stored = RefreshEvent {
        account_id: AccountId(7),
        platform: Platform::Other("my-plugin".to_owned()),
        at: at(61, 250),
        outcome: "upstream".to_owned(),
        duration: Duration::from_millis(1_234),
        lock_layer: Some("redis+database".to_owned()),
        attempts: 2,
    };
    append(&log, &stored).await;
    let none = RefreshEvent {
        account_id: AccountId(8),
        lock_layer: None,
        attempts: 0,
        ..event(8, 5, "held_elsewhere")
    };
    append(&log, &none).await;
    let read = log.recent(AccountId(7), 10).await.expect("recent");
    assert_eq!(read, vec![stored], "the event reads back as appended");
    let read = log.recent(AccountId(8), 10).await.expect("recent");
    assert_eq!(read, vec![none], "no lock layer and no attempt read back");
    assert!(
        log.recent(AccountId(9), 10)
            .await
            .expect("recent")
            .is_empty(),
        "an account without events has none"
    );
}

async fn recent_is_per_account_newest_first_and_bounded(log: Log) {
    for secs in [30, 10, 50, 20, 40] {
        append(&log, &event(1, secs, "refreshed")).await;
        append(&log, &event(2, secs + 1, "still_fresh")).await;
    }
    let read = log.recent(AccountId(1), 3).await.expect("recent");
    let times: Vec<_> = read.iter().map(|e| e.at).collect();
    assert_eq!(
        times,
        vec![at(50, 0), at(40, 0), at(30, 0)],
        "the newest 3 of account 1, newest first"
    );
    assert!(
        read.iter().all(|e| e.account_id == AccountId(1)),
        "only account 1's events"
    );
    assert_eq!(
        log.recent(AccountId(2), 100).await.expect("recent").len(),
        5,
        "a limit above the count returns them all"
    );
    assert!(
        log.recent(AccountId(1), 0)
            .await
            .expect("recent")
            .is_empty(),
        "limit 0 returns nothing"
    );
}

async fn events_of_one_instant_read_back_latest_appended_first(log: Log) {
    for outcome in ["held_elsewhere", "still_fresh", "refreshed"] {
        append(&log, &event(3, 100, outcome)).await;
    }
    let read = log.recent(AccountId(3), 2).await.expect("recent");
    let outcomes: Vec<_> = read.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["refreshed", "still_fresh"]);
}

async fn long_names_are_cut_to_the_limit(log: Log) {
    let long = "x".repeat(MAX_EVENT_NAME_CHARS + 10);
    let mut stored = event(4, 1, &long);
    stored.lock_layer = Some(long.clone());
    append(&log, &stored).await;
    let read = log.recent(AccountId(4), 1).await.expect("recent");
    let cut = "x".repeat(MAX_EVENT_NAME_CHARS);
    assert_eq!(read[0].outcome, cut, "the outcome is cut");
    assert_eq!(
        read[0].lock_layer.as_deref(),
        Some(cut.as_str()),
        "the lock layer is cut"
    );
}

async fn latest_is_the_newest_of_each_account_asked(log: Log) {
    for (account, secs, outcome) in [
        (1, 10, "a"),
        (1, 30, "b"),
        (1, 20, "c"),
        (2, 5, "d"),
        (2, 5, "e"),
        (3, 50, "f"),
    ] {
        append(&log, &event(account, secs, outcome)).await;
    }
    let mut read: Vec<(i64, String)> = log
        .latest(&[AccountId(1), AccountId(2), AccountId(4)])
        .await
        .expect("latest")
        .into_iter()
        .map(|e| (e.account_id.get(), e.outcome))
        .collect();
    read.sort();
    assert_eq!(
        read,
        vec![(1, "b".to_owned()), (2, "e".to_owned())],
        "the newest of each account asked (of one instant, the later appended); none for one without events or not asked"
    );
    assert!(
        log.latest(&[]).await.expect("latest").is_empty(),
        "no account asked, no event"
    );
}

async fn hourly_counts_by_hour_platform_and_outcome_since_a_time(log: Log) {
    // Hour 0 (T0 is a whole hour): before `since`, not counted.
    append(&log, &event(1, 10, "refreshed")).await;
    // Hour 1: two refreshed on Anthropic, one on OpenAI, one failure.
    append(&log, &event(1, 3_600, "refreshed")).await;
    append(&log, &event(2, 7_199, "refreshed")).await;
    let mut openai = event(3, 4_000, "refreshed");
    openai.platform = Platform::OpenAi;
    append(&log, &openai).await;
    append(&log, &event(1, 5_000, "upstream")).await;
    // Hour 3.
    append(&log, &event(1, 3 * 3_600 + 59, "still_fresh")).await;
    let counts = log.hourly(at(3_600, 0)).await.expect("hourly");
    let row = |hour: i64, platform: Platform, outcome: &str, count| HourlyCount {
        hour: at(hour * 3_600, 0),
        platform,
        outcome: outcome.to_owned(),
        count,
    };
    assert_eq!(
        counts,
        vec![
            row(1, Platform::Anthropic, "refreshed", 2),
            row(1, Platform::Anthropic, "upstream", 1),
            row(1, Platform::OpenAi, "refreshed", 1),
            row(3, Platform::Anthropic, "still_fresh", 1),
        ],
        "counts by hour, platform and outcome, sorted, since the given time"
    );
    assert!(
        log.hourly(at(5 * 3_600, 0))
            .await
            .expect("hourly")
            .is_empty(),
        "nothing since a later time"
    );
}

async fn purge_deletes_only_older_events_oldest_first_up_to_its_limit(log: Log) {
    for secs in [5, 1, 4, 2, 3, 10, 11] {
        append(&log, &event(1, secs, "refreshed")).await;
    }
    let deleted = log.purge(at(10, 0), 2).await.expect("purge");
    assert_eq!(deleted, 2, "at most the limit");
    let left: Vec<_> = log
        .recent(AccountId(1), 100)
        .await
        .expect("recent")
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(
        left,
        vec![at(11, 0), at(10, 0), at(5, 0), at(4, 0), at(3, 0)],
        "the two oldest went first"
    );
    let deleted = log.purge(at(10, 0), 100).await.expect("purge");
    assert_eq!(deleted, 3, "the rest older than the bound");
    let deleted = log.purge(at(10, 0), 100).await.expect("purge");
    assert_eq!(deleted, 0, "nothing older is left");
    assert_eq!(
        log.recent(AccountId(1), 100).await.expect("recent").len(),
        2,
        "events at or after the bound are kept"
    );
    assert_eq!(log.purge(at(100, 0), 0).await.expect("purge"), 0, "limit 0");
}

async fn purge_excess_keeps_the_newest_of_each_account(log: Log) {
    // Account 1: five events, two at one instant on either side of the
    // cut (the later appended is the newer); account 2: two; account 3:
    // one far older than everything else, within its own bound.
    for (secs, outcome) in [(10, "a"), (20, "b"), (30, "c"), (20, "d"), (5, "e")] {
        append(&log, &event(1, secs, outcome)).await;
    }
    append(&log, &event(2, 1, "f")).await;
    append(&log, &event(2, 2, "g")).await;
    append(&log, &event(3, -1_000, "h")).await;
    let outcomes = |events: Vec<RefreshEvent>| {
        events
            .into_iter()
            .map(|e| e.outcome)
            .collect::<Vec<String>>()
    };
    let deleted = log.purge_excess(2, 1).await.expect("purge_excess");
    assert_eq!(deleted, 1, "at most the limit");
    assert_eq!(
        outcomes(log.recent(AccountId(1), 100).await.expect("recent")).len(),
        4,
        "one of account 1's excess events went"
    );
    let deleted = log.purge_excess(2, 100).await.expect("purge_excess");
    assert_eq!(deleted, 2, "the rest of account 1's excess");
    assert_eq!(
        log.purge_excess(2, 100).await.expect("purge_excess"),
        0,
        "nothing beyond the bound is left"
    );
    assert_eq!(
        outcomes(log.recent(AccountId(1), 100).await.expect("recent")),
        vec!["c", "d"],
        "account 1 keeps its newest two (of two at one instant, the later appended)"
    );
    assert_eq!(
        outcomes(log.recent(AccountId(2), 100).await.expect("recent")),
        vec!["g", "f"],
        "an account within the bound keeps every event"
    );
    assert_eq!(
        outcomes(log.recent(AccountId(3), 100).await.expect("recent")),
        vec!["h"],
        "an old event within its account's bound is kept"
    );
    assert_eq!(
        log.purge_excess(1, 0).await.expect("purge_excess"),
        0,
        "limit 0"
    );
}

async fn concurrent_appends_are_all_kept(log: Log) {
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                log.append(&event(5, n, "refreshed")).await.expect("append");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("append task");
    }
    assert_eq!(
        log.recent(AccountId(5), 100).await.expect("recent").len(),
        32,
        "every concurrent append is kept"
    );
}
