//! Conformance suite of [`AccountRepository`].

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;

use super::fixtures::{T0, account_expiring};
use crate::domain::{Account, AccountId, AccountStatus, Credentials};
use crate::error::StorageErrorKind;
use crate::ports::{AccountRepository, CasExpectation, CasOutcome, DueCursor};

/// Runs every check, each on a fresh repository from `make`.
///
/// # Panics
/// On the first violated contract clause, naming the check.
pub async fn account_repository_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AccountRepository>>,
{
    get_of_missing_account_is_none(make().await).await;
    insert_round_trips_every_field(make().await).await;
    insert_of_existing_id_is_a_conflict(make().await).await;
    cas_applies_at_expected_version_and_bumps_it(make().await).await;
    cas_rejects_an_older_writer(make().await).await;
    cas_of_missing_account_is_not_found(make().await).await;
    cas_touches_only_credential_fields(make().await).await;
    concurrent_cas_at_one_version_applies_once(make().await).await;
    list_due_filters_orders_and_pages(make().await).await;
    list_due_pages_through_ties_and_unknown_expiries(make().await).await;
    status_writes_touch_only_their_fields(make().await).await;
    status_writes_on_missing_account_are_not_found(make().await).await;
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(T0, 0).expect("valid")
}

async fn read_back(repo: &Arc<dyn AccountRepository>, id: AccountId) -> Account {
    repo.get(id).await.expect("get").expect("present")
}

async fn seed(repo: &Arc<dyn AccountRepository>, account: Account) -> Account {
    repo.insert(account).await.expect("insert")
}

async fn get_of_missing_account_is_none(repo: Arc<dyn AccountRepository>) {
    assert!(
        repo.get(AccountId(404)).await.expect("get").is_none(),
        "get_of_missing_account_is_none"
    );
}

async fn insert_round_trips_every_field(repo: Arc<dyn AccountRepository>) {
    let mut account = account_expiring(1, Some(3600));
    account.name = "round trip".into();
    account.extra.insert("org_uuid".into(), json!("o-1"));
    account.proxy_id = Some(9);
    account.credentials_version = 3;
    account.temp_unschedulable_until = Some(t0() + Span::seconds(60));
    account.temp_unschedulable_reason = Some("429".into());
    account
        .credentials
        .insert("intercept_warmup_requests", json!(true));
    let stored = seed(&repo, account.clone()).await;
    let read = read_back(&repo, account.id).await;
    assert_eq!(
        read, stored,
        "insert_round_trips_every_field: get differs from insert's result"
    );
    assert_eq!(
        read.credentials, account.credentials,
        "insert_round_trips_every_field: credentials"
    );
    assert_eq!(
        read.extra, account.extra,
        "insert_round_trips_every_field: extra"
    );
    assert_eq!(
        read.credentials_version, 3,
        "insert_round_trips_every_field: version kept"
    );
    assert_eq!(
        read.expires_at,
        Some(t0() + Span::seconds(3600)),
        "insert_round_trips_every_field: expires_at derived"
    );
    assert_eq!(
        read.proxy_id,
        Some(9),
        "insert_round_trips_every_field: proxy"
    );
    assert_eq!(
        read.temp_unschedulable_reason.as_deref(),
        Some("429"),
        "insert_round_trips_every_field: temp reason"
    );
}

async fn insert_of_existing_id_is_a_conflict(repo: Arc<dyn AccountRepository>) {
    seed(&repo, account_expiring(1, Some(60))).await;
    let err = repo
        .insert(account_expiring(1, Some(60)))
        .await
        .expect_err("duplicate insert");
    assert_eq!(
        err.kind(),
        StorageErrorKind::Conflict,
        "insert_of_existing_id_is_a_conflict"
    );
}

async fn cas_applies_at_expected_version_and_bumps_it(repo: Arc<dyn AccountRepository>) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let mut creds = a.credentials.clone();
    creds.insert("access_token", "at-2");
    creds.insert("expires_at", json!((T0 + 7200).to_string()));
    let CasOutcome::Applied(applied) = repo
        .compare_and_set_credentials(a.id, CasExpectation::of(&a), &creds)
        .await
        .expect("cas")
    else {
        panic!("cas_applies_at_expected_version_and_bumps_it: not applied");
    };
    assert_eq!(
        applied.credentials_version, 1,
        "cas_applies_at_expected_version_and_bumps_it: version"
    );
    assert_eq!(
        applied.expires_at,
        Some(t0() + Span::seconds(7200)),
        "cas_applies_at_expected_version_and_bumps_it: expires_at re-derived"
    );
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.credentials, creds,
        "cas_applies_at_expected_version_and_bumps_it: stored credentials"
    );
    assert_eq!(
        read.credentials_version, 1,
        "cas_applies_at_expected_version_and_bumps_it: stored version"
    );
}

async fn cas_rejects_an_older_writer(repo: Arc<dyn AccountRepository>) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let newer = a.credentials.clone().with("refresh_token", "rt-new");
    assert!(matches!(
        repo.compare_and_set_credentials(a.id, CasExpectation::of(&a), &newer)
            .await
            .expect("cas"),
        CasOutcome::Applied(_)
    ));
    let older = a.credentials.clone().with("refresh_token", "rt-old-writer");
    let outcome = repo
        .compare_and_set_credentials(a.id, CasExpectation::of(&a), &older)
        .await
        .expect("cas");
    assert_eq!(
        outcome,
        CasOutcome::VersionMismatch { current_version: 1 },
        "cas_rejects_an_older_writer"
    );
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.credentials
            .refresh_token()
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("rt-new"),
        "cas_rejects_an_older_writer: newer rotation kept"
    );
}

async fn cas_of_missing_account_is_not_found(repo: Arc<dyn AccountRepository>) {
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
        .expect("cas");
    assert_eq!(
        outcome,
        CasOutcome::NotFound,
        "cas_of_missing_account_is_not_found"
    );
}

async fn cas_touches_only_credential_fields(repo: Arc<dyn AccountRepository>) {
    let mut a = account_expiring(1, Some(60));
    a.extra.insert("k".into(), json!("v"));
    a.temp_unschedulable_until = Some(t0() + Span::seconds(600));
    let a = seed(&repo, a).await;
    repo.set_error(
        a.id,
        a.credentials_version,
        "Token refresh failed (non-retryable): test",
    )
    .await
    .expect("set_error");
    let creds = a.credentials.clone().with("access_token", "at-2");
    assert!(matches!(
        repo.compare_and_set_credentials(a.id, CasExpectation::of(&a), &creds)
            .await
            .expect("cas"),
        CasOutcome::Applied(_)
    ));
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.status,
        AccountStatus::Error,
        "cas_touches_only_credential_fields: status"
    );
    assert!(
        read.error_message.is_some(),
        "cas_touches_only_credential_fields: error message"
    );
    assert_eq!(
        read.extra, a.extra,
        "cas_touches_only_credential_fields: extra"
    );
    assert_eq!(
        read.temp_unschedulable_until, a.temp_unschedulable_until,
        "cas_touches_only_credential_fields: temp-unschedulable"
    );
    assert_eq!(
        read.name, a.name,
        "cas_touches_only_credential_fields: name"
    );
}

async fn concurrent_cas_at_one_version_applies_once(repo: Arc<dyn AccountRepository>) {
    let a = seed(&repo, account_expiring(1, Some(60))).await;
    let mut writers = Vec::new();
    for i in 0..16 {
        let (repo, creds) = (
            Arc::clone(&repo),
            a.credentials
                .clone()
                .with("refresh_token", format!("rt-{i}")),
        );
        let expected = CasExpectation::of(&a);
        writers.push(tokio::spawn(async move {
            repo.compare_and_set_credentials(AccountId(1), expected, &creds)
                .await
        }));
    }
    let mut applied = 0;
    for w in writers {
        if matches!(w.await.expect("join").expect("cas"), CasOutcome::Applied(_)) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "concurrent_cas_at_one_version_applies_once");
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.credentials_version, 1,
        "concurrent_cas_at_one_version_applies_once: version"
    );
}

async fn list_due_filters_orders_and_pages(repo: Arc<dyn AccountRepository>) {
    // ids 1..=20 expire at T0 + id*60; 21 has no expiry; 22 is disabled; 23 is far out.
    for id in 1..=20 {
        seed(&repo, account_expiring(id, Some(id * 60))).await;
    }
    seed(&repo, account_expiring(21, None)).await;
    let mut disabled = account_expiring(22, Some(30));
    disabled.status = AccountStatus::Disabled;
    seed(&repo, disabled).await;
    seed(&repo, account_expiring(23, Some(86_400))).await;

    let before = t0() + Span::seconds(10 * 60 + 1);
    let mut seen = Vec::new();
    let mut cursor: Option<DueCursor> = None;
    loop {
        let page = repo.list_due(before, cursor, 3).await.expect("list_due");
        assert!(
            page.len() <= 3,
            "list_due_filters_orders_and_pages: page size"
        );
        let Some(last) = page.last() else { break };
        cursor = Some(DueCursor::after(last));
        seen.extend(page.iter().map(|a| a.id.get()));
    }
    let mut expected = vec![21];
    expected.extend(1..=10);
    assert_eq!(
        seen, expected,
        "list_due_filters_orders_and_pages: unknown expiry first, then by expires_at; no disabled, none past `before`"
    );
}

async fn list_due_pages_through_ties_and_unknown_expiries(repo: Arc<dyn AccountRepository>) {
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
    let before = t0() + Span::seconds(3600);
    let mut pages = Vec::new();
    let mut cursor: Option<DueCursor> = None;
    loop {
        let page = repo.list_due(before, cursor, 2).await.expect("list_due");
        let Some(last) = page.last() else { break };
        cursor = Some(DueCursor::after(last));
        pages.push(page.iter().map(|a| a.id.get()).collect::<Vec<_>>());
    }
    let seen: Vec<i64> = pages.concat();
    assert_eq!(
        seen,
        vec![3, 5, 7, 20, 10, 11, 12, 13, 14],
        "list_due_pages_through_ties_and_unknown_expiries: unknown first by id, then (expires_at, id)"
    );
    assert!(
        pages[..pages.len() - 1].iter().all(|p| p.len() == 2),
        "list_due_pages_through_ties_and_unknown_expiries: every page but the last is full ({pages:?})"
    );
}

async fn status_writes_touch_only_their_fields(repo: Arc<dyn AccountRepository>) {
    let mut a = account_expiring(1, Some(60));
    a.temp_unschedulable_until = Some(t0() + Span::seconds(600));
    a.temp_unschedulable_reason = Some("overloaded".into());
    let a = seed(&repo, a).await;
    repo.set_error(
        a.id,
        a.credentials_version,
        "Token refresh failed (non-retryable): x",
    )
    .await
    .expect("set_error");
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.status,
        AccountStatus::Error,
        "status_writes_touch_only_their_fields: set_error status"
    );
    assert_eq!(
        read.credentials, a.credentials,
        "status_writes_touch_only_their_fields: set_error credentials"
    );
    assert_eq!(
        read.credentials_version, a.credentials_version,
        "status_writes_touch_only_their_fields: set_error version"
    );
    repo.clear_error(a.id).await.expect("clear_error");
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.status,
        AccountStatus::Active,
        "status_writes_touch_only_their_fields: clear_error status"
    );
    assert_eq!(
        read.error_message, None,
        "status_writes_touch_only_their_fields: clear_error message"
    );
    repo.clear_temp_unschedulable(a.id)
        .await
        .expect("clear_temp_unschedulable");
    let read = read_back(&repo, a.id).await;
    assert_eq!(
        read.temp_unschedulable_until, None,
        "status_writes_touch_only_their_fields: until"
    );
    assert_eq!(
        read.temp_unschedulable_reason, None,
        "status_writes_touch_only_their_fields: reason"
    );
    assert_eq!(
        read.credentials, a.credentials,
        "status_writes_touch_only_their_fields: credentials untouched"
    );
    assert_eq!(
        read.credentials_version, a.credentials_version,
        "status_writes_touch_only_their_fields: version untouched"
    );
    // An errored account leaves the due index; a cleared one returns.
    repo.set_error(a.id, a.credentials_version, "x")
        .await
        .expect("set_error");
    let due = repo
        .list_due(t0() + Span::seconds(3600), None, 10)
        .await
        .expect("list_due");
    assert!(
        due.is_empty(),
        "status_writes_touch_only_their_fields: errored accounts are not due"
    );
    repo.clear_error(a.id).await.expect("clear_error");
    let due = repo
        .list_due(t0() + Span::seconds(3600), None, 10)
        .await
        .expect("list_due");
    assert_eq!(
        due.len(),
        1,
        "status_writes_touch_only_their_fields: re-activated account is due again"
    );
}

async fn status_writes_on_missing_account_are_not_found(repo: Arc<dyn AccountRepository>) {
    for result in [
        repo.set_error(AccountId(404), 0, "x").await.map(drop),
        repo.clear_error(AccountId(404)).await,
        repo.clear_temp_unschedulable(AccountId(404)).await,
    ] {
        let err = result.expect_err("missing account");
        assert_eq!(
            err.kind(),
            StorageErrorKind::NotFound,
            "status_writes_on_missing_account_are_not_found"
        );
    }
}
