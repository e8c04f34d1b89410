//! Conformance suite of [`AccountRepository`]: one check per clause of its
//! `# Contract` and of its methods' docs.
//!
//! Checks, in the order they run:
//! `get_of_missing_account_is_none`, `insert_round_trips_every_field`,
//! `insert_derives_expires_at_from_the_credentials`,
//! `insert_of_existing_id_is_a_conflict`,
//! `cas_applies_at_expected_version_and_bumps_it`,
//! `cas_re_derives_expires_at`, `cas_rejects_an_older_writer`,
//! `cas_is_fenced_on_the_refresh_token_fingerprint`,
//! `cas_of_missing_account_is_not_found`,
//! `cas_touches_only_credential_fields`,
//! `concurrent_cas_at_one_version_applies_once`,
//! `list_due_filters_orders_and_pages`,
//! `list_due_pages_through_ties_and_unknown_expiries`,
//! `list_due_before_is_exclusive`, `list_due_cursor_is_exclusive`,
//! `set_error_is_fenced_on_the_observed_version`,
//! `status_writes_touch_only_their_fields`,
//! `status_writes_on_missing_account_are_not_found`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::fixtures::{T0, account_expiring, at};
use super::harness::{Checks, check};
use crate::domain::{Account, AccountId, AccountStatus, Credentials, Fingerprint, Secret};
use crate::error::StorageErrorKind;
use crate::ports::{AccountRepository, CasExpectation, CasOutcome, DueCursor};

type Repo = Arc<dyn AccountRepository>;

/// Runs every check (listed in the module docs), each on a fresh repository
/// from `make` and under its own timeout. Needs a tokio runtime with time
/// enabled.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `account_repository_suite: <check>: <clause>`; with
/// `account_repository_suite: <check> timed out` when a call never returns.
pub async fn account_repository_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AccountRepository>>,
{
    let checks = Checks::new("account_repository_suite");
    check!(checks, get_of_missing_account_is_none(make().await));
    check!(checks, insert_round_trips_every_field(make().await));
    check!(
        checks,
        insert_derives_expires_at_from_the_credentials(make().await)
    );
    check!(checks, insert_of_existing_id_is_a_conflict(make().await));
    check!(
        checks,
        cas_applies_at_expected_version_and_bumps_it(make().await)
    );
    check!(checks, cas_re_derives_expires_at(make().await));
    check!(checks, cas_rejects_an_older_writer(make().await));
    check!(
        checks,
        cas_is_fenced_on_the_refresh_token_fingerprint(make().await)
    );
    check!(checks, cas_of_missing_account_is_not_found(make().await));
    check!(checks, cas_touches_only_credential_fields(make().await));
    check!(
        checks,
        concurrent_cas_at_one_version_applies_once(make().await)
    );
    check!(checks, list_due_filters_orders_and_pages(make().await));
    check!(
        checks,
        list_due_pages_through_ties_and_unknown_expiries(make().await)
    );
    check!(checks, list_due_before_is_exclusive(make().await));
    check!(checks, list_due_cursor_is_exclusive(make().await));
    check!(
        checks,
        set_error_is_fenced_on_the_observed_version(make().await)
    );
    check!(checks, status_writes_touch_only_their_fields(make().await));
    check!(
        checks,
        status_writes_on_missing_account_are_not_found(make().await)
    );
}

async fn read_back(repo: &Repo, id: AccountId) -> Account {
    repo.get(id).await.expect("get").expect("account present")
}

async fn seed(repo: &Repo, account: Account) -> Account {
    repo.insert(account).await.expect("insert")
}

/// A fenced write of `credentials` over `account` as it was read.
async fn cas(repo: &Repo, account: &Account, credentials: &Credentials) -> CasOutcome {
    repo.compare_and_set_credentials(account.id, CasExpectation::of(account), credentials)
        .await
        .expect("compare_and_set_credentials")
}

/// The account a write stored; panics naming `what` when it was not applied.
fn applied(outcome: CasOutcome, what: &str) -> Account {
    match outcome {
        CasOutcome::Applied(account) => account,
        other => panic!("{what}: expected Applied, got {other:?}"),
    }
}

/// `account`'s credentials with `key` set to `value`.
fn creds_with(account: &Account, key: &str, value: impl Into<serde_json::Value>) -> Credentials {
    account.credentials.clone().with(key, value)
}

/// The ids of one page of `list_due`.
async fn due_ids(
    repo: &Repo,
    before: DateTime<Utc>,
    after: Option<DueCursor>,
    limit: usize,
) -> Vec<i64> {
    let page = repo.list_due(before, after, limit).await.expect("list_due");
    assert!(page.corrupt.is_empty(), "no corrupt rows were stored");
    page.accounts.iter().map(|a| a.id.get()).collect()
}

/// Every page of `list_due(before, .., limit)` from the start, as ids, for a
/// repository holding at most `stored` accounts. The loop is bounded: it
/// panics when a page exceeds `limit`, when an account comes back twice (a
/// cursor that is not exclusive), or when more pages come than `stored`
/// accounts can fill, instead of paging forever.
async fn due_pages(
    repo: &Repo,
    before: DateTime<Utc>,
    limit: usize,
    stored: usize,
) -> Vec<Vec<i64>> {
    let max_pages = stored.div_ceil(limit) + 1;
    let mut pages = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<DueCursor> = None;
    loop {
        assert!(
            pages.len() < max_pages,
            "list_due did not end after {max_pages} pages of {limit} over {stored} accounts"
        );
        let page = repo
            .list_due(before, cursor, limit)
            .await
            .expect("list_due");
        assert!(page.corrupt.is_empty(), "no corrupt rows were stored");
        let accounts = page.accounts;
        assert!(
            accounts.len() <= limit,
            "list_due returned {} accounts for limit {limit}",
            accounts.len()
        );
        for account in &accounts {
            assert!(
                seen.insert(account.id),
                "list_due returned account {} twice: the cursor must be exclusive",
                account.id
            );
        }
        match (accounts.last(), page.next) {
            (Some(last), Some(next)) => {
                assert_eq!(accounts.len(), limit, "a page with a next cursor is full");
                assert_eq!(
                    next,
                    DueCursor::after(last),
                    "the next cursor is just past the page's last account"
                );
                cursor = Some(next);
            }
            (_, None) => {
                assert!(
                    accounts.len() < limit,
                    "a full page of {limit} must give a next cursor (more may follow)"
                );
                if !accounts.is_empty() {
                    pages.push(accounts.iter().map(|a| a.id.get()).collect());
                }
                return pages;
            }
            (None, Some(_)) => panic!("an empty page must not give a next cursor"),
        }
        pages.push(accounts.iter().map(|a| a.id.get()).collect());
    }
}

async fn get_of_missing_account_is_none(repo: Repo) {
    assert!(
        repo.get(AccountId(404)).await.expect("get").is_none(),
        "get of a missing id is Ok(None)"
    );
}

async fn insert_round_trips_every_field(repo: Repo) {
    let mut account = account_expiring(1, Some(3600));
    account.name = "round trip".into();
    account.extra.insert("org_uuid".into(), json!("o-1"));
    account.proxy = Some("socks5://u:p@10.0.0.9:1080".parse().expect("a proxy URL"));
    account.credentials_version = 3;
    account.temp_unschedulable_until = Some(at(60));
    account.temp_unschedulable_reason = Some("429".into());
    account
        .credentials
        .insert("intercept_warmup_requests", json!(true));
    let stored = seed(&repo, account.clone()).await;
    let read = read_back(&repo, account.id).await;
    assert_eq!(read, stored, "get differs from insert's result");
    assert_eq!(read.credentials, account.credentials, "credentials");
    assert_eq!(read.extra, account.extra, "extra");
    assert_eq!(read.credentials_version, 3, "version kept");
    assert_eq!(read.proxy, account.proxy, "proxy");
    assert_eq!(
        read.temp_unschedulable_until, account.temp_unschedulable_until,
        "temp-unschedulable until"
    );
    assert_eq!(
        read.temp_unschedulable_reason.as_deref(),
        Some("429"),
        "temp-unschedulable reason"
    );
    assert_eq!(read.name, account.name, "name");
}

async fn insert_derives_expires_at_from_the_credentials(repo: Repo) {
    // The `expires_at` fields given are wrong on purpose: a backend must
    // derive the column from the credentials, never store the field.
    let mut known = account_expiring(1, Some(3600));
    known.expires_at = Some(at(365 * 86_400));
    let mut unknown = account_expiring(2, None);
    unknown.expires_at = Some(at(60));
    for (account, derived) in [(known, Some(at(3600))), (unknown, None)] {
        let id = account.id;
        let stored = seed(&repo, account).await;
        assert_eq!(stored.expires_at, derived, "insert's result, account {id}");
        assert_eq!(
            read_back(&repo, id).await.expires_at,
            derived,
            "stored row, account {id}"
        );
    }
    assert_eq!(
        due_ids(&repo, at(7200), None, 10).await,
        vec![2, 1],
        "the due index follows the derived expiry (unknown first, then 1 at T0+3600)"
    );
}

async fn insert_of_existing_id_is_a_conflict(repo: Repo) {
    seed(&repo, account_expiring(1, Some(60))).await;
    let err = repo
        .insert(account_expiring(1, Some(60)))
        .await
        .expect_err("a duplicate insert must fail");
    assert_eq!(err.kind(), StorageErrorKind::Conflict, "error kind");
}

async fn cas_applies_at_expected_version_and_bumps_it(repo: Repo) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let creds = creds_with(&a, "access_token", "at-2");
    let written = applied(
        cas(&repo, &a, &creds).await,
        "a write at the stored version",
    );
    assert_eq!(written.credentials_version, 1, "returned version");
    assert_eq!(written.credentials, creds, "returned credentials");
    let read = read_back(&repo, a.id).await;
    assert_eq!(read, written, "get differs from the write's result");
    assert_eq!(read.credentials_version, 1, "stored version");
}

async fn cas_re_derives_expires_at(repo: Repo) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let later = creds_with(&a, "expires_at", (T0 + 7200).to_string());
    let b = applied(cas(&repo, &a, &later).await, "a later expiry");
    assert_eq!(b.expires_at, Some(at(7200)), "returned expires_at");
    assert_eq!(
        read_back(&repo, a.id).await.expires_at,
        Some(at(7200)),
        "stored expires_at"
    );
    assert!(
        due_ids(&repo, at(3600), None, 10).await.is_empty(),
        "the due index follows the new expiry"
    );
    let mut unknown = b.credentials.clone();
    unknown.remove("expires_at");
    let c = applied(cas(&repo, &b, &unknown).await, "no expiry");
    assert_eq!(c.expires_at, None, "returned expires_at cleared");
    assert_eq!(
        read_back(&repo, a.id).await.expires_at,
        None,
        "stored expires_at cleared"
    );
    assert_eq!(
        due_ids(&repo, at(3600), None, 10).await,
        vec![1],
        "an unknown expiry is due"
    );
}

async fn cas_rejects_an_older_writer(repo: Repo) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let newer = creds_with(&a, "refresh_token", "rt-new");
    let stored = applied(cas(&repo, &a, &newer).await, "the first writer");
    let older = creds_with(&a, "refresh_token", "rt-old-writer");
    assert_eq!(
        cas(&repo, &a, &older).await,
        CasOutcome::VersionMismatch { current_version: 1 },
        "a writer expecting version 0"
    );
    assert_eq!(
        read_back(&repo, a.id).await,
        stored,
        "the newer rotation is kept"
    );
}

async fn cas_is_fenced_on_the_refresh_token_fingerprint(repo: Repo) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let creds = creds_with(&a, "access_token", "at-2");
    let other = Fingerprint::of(&Secret::from("rt-other"));
    for (what, refresh_token) in [
        ("another refresh token", Some(other)),
        ("no refresh token", None),
    ] {
        let expected = CasExpectation {
            version: a.credentials_version,
            refresh_token,
        };
        assert_eq!(
            repo.compare_and_set_credentials(a.id, expected, &creds)
                .await
                .expect("compare_and_set_credentials"),
            CasOutcome::VersionMismatch {
                current_version: a.credentials_version
            },
            "expecting {what} at the stored version"
        );
        assert_eq!(
            read_back(&repo, a.id).await,
            a,
            "expecting {what}: nothing written"
        );
    }
    // The fingerprint is of the token as `Credentials::refresh_token` reads
    // it: trimmed, and a blank one is none.
    for (id, stored) in [(2, json!("  rt-2-0 \n")), (3, json!("")), (4, json!(null))] {
        let mut account = account_expiring(id, Some(60));
        account.credentials.insert("refresh_token", stored.clone());
        let account = seed(&repo, account).await;
        applied(
            cas(
                &repo,
                &account,
                &creds_with(&account, "access_token", "at-2"),
            )
            .await,
            &format!("a row holding refresh token {stored}, expected as read"),
        );
    }
}

async fn cas_of_missing_account_is_not_found(repo: Repo) {
    let outcome = repo
        .compare_and_set_credentials(
            AccountId(404),
            CasExpectation {
                version: 0,
                refresh_token: None,
            },
            &Credentials::new(),
        )
        .await
        .expect("compare_and_set_credentials");
    assert_eq!(outcome, CasOutcome::NotFound, "outcome");
}

async fn cas_touches_only_credential_fields(repo: Repo) {
    let mut a = account_expiring(1, Some(60));
    a.extra.insert("k".into(), json!("v"));
    a.temp_unschedulable_until = Some(at(600));
    a.temp_unschedulable_reason = Some("overloaded".into());
    a.proxy = Some("http://10.0.0.7:3128".parse().expect("a proxy URL"));
    let a = seed(&repo, a).await;
    assert!(
        repo.set_error(a.id, a.credentials_version, "refresh failed: test")
            .await
            .expect("set_error"),
        "set_error at the stored version"
    );
    let before = read_back(&repo, a.id).await;
    let creds = creds_with(&a, "access_token", "at-2");
    let written = applied(cas(&repo, &before, &creds).await, "the write");
    let read = read_back(&repo, a.id).await;
    assert_eq!(read, written, "get differs from the write's result");
    let untouched = Account {
        credentials: read.credentials.clone(),
        credentials_version: read.credentials_version,
        expires_at: read.expires_at,
        ..before
    };
    assert_eq!(
        read, untouched,
        "status, error, extra, name, proxy and scheduling fields unchanged"
    );
}

async fn concurrent_cas_at_one_version_applies_once(repo: Repo) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let repo = Arc::clone(&repo);
            let creds = creds_with(&a, "refresh_token", format!("rt-{i}"));
            let expected = CasExpectation::of(&a);
            tokio::spawn(async move {
                repo.compare_and_set_credentials(AccountId(1), expected, &creds)
                    .await
            })
        })
        .collect();
    let mut applied = 0;
    for w in writers {
        let outcome = w.await.expect("join").expect("compare_and_set_credentials");
        applied += usize::from(matches!(outcome, CasOutcome::Applied(_)));
    }
    assert_eq!(applied, 1, "16 writers at one version: applied writes");
    assert_eq!(
        read_back(&repo, a.id).await.credentials_version,
        1,
        "stored version"
    );
}

async fn list_due_filters_orders_and_pages(repo: Repo) {
    // ids 1..=20 expire at T0 + id*60; 21 has no expiry; 22 is disabled; 23 is far out.
    for id in 1..=20 {
        seed(&repo, account_expiring(id, Some(id * 60))).await;
    }
    seed(&repo, account_expiring(21, None)).await;
    let mut disabled = account_expiring(22, Some(30));
    disabled.status = AccountStatus::Disabled;
    seed(&repo, disabled).await;
    seed(&repo, account_expiring(23, Some(86_400))).await;

    let pages = due_pages(&repo, at(10 * 60 + 1), 3, 23).await;
    let mut expected = vec![21];
    expected.extend(1..=10);
    assert_eq!(
        pages.concat(),
        expected,
        "unknown expiry first, then by expires_at; no disabled, none past `before`"
    );
}

async fn list_due_pages_through_ties_and_unknown_expiries(repo: Repo) {
    // Three unknown expiries and five accounts sharing one expiry: the
    // keyset cursor must neither skip nor repeat across page boundaries
    // (SQL pitfalls: NULL comparisons, NULL ordering, equal sort keys).
    for id in [7, 3, 5] {
        seed(&repo, account_expiring(id, None)).await;
    }
    for id in [12, 10, 14, 11, 13] {
        seed(&repo, account_expiring(id, Some(120))).await;
    }
    seed(&repo, account_expiring(20, Some(60))).await;
    let pages = due_pages(&repo, at(3600), 2, 9).await;
    assert_eq!(
        pages.concat(),
        vec![3, 5, 7, 20, 10, 11, 12, 13, 14],
        "unknown first by id, then (expires_at, id)"
    );
    assert!(
        pages[..pages.len() - 1].iter().all(|p| p.len() == 2),
        "every page but the last is full ({pages:?})"
    );
}

async fn list_due_before_is_exclusive(repo: Repo) {
    seed(&repo, account_expiring(1, Some(600))).await;
    seed(&repo, account_expiring(2, Some(599))).await;
    assert_eq!(
        due_ids(&repo, at(600), None, 10).await,
        vec![2],
        "an account expiring exactly at `before` is not due"
    );
    assert_eq!(
        due_ids(&repo, at(601), None, 10).await,
        vec![2, 1],
        "one second later it is"
    );
}

async fn list_due_cursor_is_exclusive(repo: Repo) {
    for id in [1, 2] {
        seed(&repo, account_expiring(id, None)).await;
    }
    for id in [3, 4] {
        seed(&repo, account_expiring(id, Some(60))).await;
    }
    let before = at(3600);
    let all = repo
        .list_due(before, None, 10)
        .await
        .expect("list_due")
        .accounts;
    let ids: Vec<i64> = all.iter().map(|a| a.id.get()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4], "the first page");
    for (i, account) in all.iter().enumerate() {
        assert_eq!(
            due_ids(&repo, before, Some(DueCursor::after(account)), 10).await,
            ids[i + 1..],
            "the page after account {} (expires_at {:?}) starts strictly after it",
            account.id,
            account.expires_at
        );
    }
}

async fn set_error_is_fenced_on_the_observed_version(repo: Repo) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let b = applied(
        cas(&repo, &a, &creds_with(&a, "access_token", "at-2")).await,
        "a re-import between the failure and its mark",
    );
    assert!(
        !repo
            .set_error(a.id, a.credentials_version, "stale failure")
            .await
            .expect("set_error"),
        "a failure observed on an older version returns Ok(false)"
    );
    assert_eq!(read_back(&repo, a.id).await, b, "and changes nothing");
    assert!(
        repo.set_error(a.id, b.credentials_version, "current failure")
            .await
            .expect("set_error"),
        "a failure observed on the stored version returns Ok(true)"
    );
    let read = read_back(&repo, a.id).await;
    assert_eq!(read.status, AccountStatus::Error, "and marks the account");
    assert_eq!(
        read.error_message.as_deref(),
        Some("current failure"),
        "with the message"
    );
}

async fn status_writes_touch_only_their_fields(repo: Repo) {
    let mut a = account_expiring(1, Some(60));
    a.temp_unschedulable_until = Some(at(600));
    a.temp_unschedulable_reason = Some("overloaded".into());
    let a = seed(&repo, a).await;
    let marked = |read: &Account| Account {
        status: AccountStatus::Error,
        error_message: Some("refresh failed: x".into()),
        ..read.clone()
    };
    repo.set_error(a.id, a.credentials_version, "refresh failed: x")
        .await
        .expect("set_error");
    assert_eq!(
        read_back(&repo, a.id).await,
        marked(&a),
        "set_error writes status and message only"
    );
    repo.clear_error(a.id).await.expect("clear_error");
    assert_eq!(
        read_back(&repo, a.id).await,
        a,
        "clear_error restores status active and no message only"
    );
    repo.clear_temp_unschedulable(a.id)
        .await
        .expect("clear_temp_unschedulable");
    let cleared = Account {
        temp_unschedulable_until: None,
        temp_unschedulable_reason: None,
        ..a.clone()
    };
    assert_eq!(
        read_back(&repo, a.id).await,
        cleared,
        "clear_temp_unschedulable clears until and reason only"
    );
    // An errored account leaves the due index; a cleared one returns.
    repo.set_error(a.id, a.credentials_version, "x")
        .await
        .expect("set_error");
    assert!(
        due_ids(&repo, at(3600), None, 10).await.is_empty(),
        "errored accounts are not due"
    );
    repo.clear_error(a.id).await.expect("clear_error");
    assert_eq!(
        due_ids(&repo, at(3600), None, 10).await,
        vec![1],
        "a re-activated account is due again"
    );
}

async fn status_writes_on_missing_account_are_not_found(repo: Repo) {
    for (op, result) in [
        (
            "set_error",
            repo.set_error(AccountId(404), 0, "x").await.map(drop),
        ),
        ("clear_error", repo.clear_error(AccountId(404)).await),
        (
            "clear_temp_unschedulable",
            repo.clear_temp_unschedulable(AccountId(404)).await,
        ),
    ] {
        let err = result.expect_err(op);
        assert_eq!(err.kind(), StorageErrorKind::NotFound, "{op}: error kind");
    }
}
