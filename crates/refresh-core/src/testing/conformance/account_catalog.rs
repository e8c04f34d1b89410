//! Conformance suite of [`AccountCatalog`]: one check per clause of its
//! `# Contract`, run against a catalog and the [`AccountRepository`] of the
//! same store.
//!
//! Checks, in the order they run:
//! `create_assigns_fresh_ids_and_derives_the_expiry`,
//! `create_never_reuses_an_inserted_id`,
//! `invalid_accounts_are_typed_errors_naming_the_field`,
//! `import_is_all_or_nothing`,
//! `list_filters_and_pages_by_id`,
//! `count_by_status_counts_per_platform`,
//! `update_metadata_touches_only_metadata`,
//! `status_updates_move_the_due_listing`,
//! `delete_removes_the_account`,
//! `replace_credentials_bumps_the_version_and_fences_out_a_refresh`,
//! `a_refresh_token_is_held_by_one_account`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use super::fixtures::{T0, at};
use super::harness::{Checks, check};
use crate::domain::{Account, AccountId, AccountStatus, AccountType, Credentials, Platform};
use crate::error::{RefreshTokenTaken, StorageError, StorageErrorKind, TokenHolder};
use crate::ports::{
    AccountCatalog, AccountFilter, AccountRepository, CasExpectation, CasOutcome, MetadataUpdate,
    NewAccount,
};

type Repo = Arc<dyn AccountRepository>;
type Catalog = Arc<dyn AccountCatalog>;

/// Runs every check (listed in the module docs), each on a fresh store from
/// `make`, which returns the store's repository and catalog (usually one
/// object behind both), under its own timeout.
///
/// # Panics
/// On the first violated contract clause, with a message
/// `account_catalog_suite: <check>: <clause>`.
pub async fn account_catalog_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn AccountRepository>, Arc<dyn AccountCatalog>)>,
{
    let checks = Checks::new("account_catalog_suite");
    check!(
        checks,
        create_assigns_fresh_ids_and_derives_the_expiry(make().await)
    );
    check!(checks, create_never_reuses_an_inserted_id(make().await));
    check!(
        checks,
        invalid_accounts_are_typed_errors_naming_the_field(make().await)
    );
    check!(checks, import_is_all_or_nothing(make().await));
    check!(checks, list_filters_and_pages_by_id(make().await));
    check!(checks, count_by_status_counts_per_platform(make().await));
    check!(checks, update_metadata_touches_only_metadata(make().await));
    check!(checks, status_updates_move_the_due_listing(make().await));
    check!(checks, delete_removes_the_account(make().await));
    check!(
        checks,
        replace_credentials_bumps_the_version_and_fences_out_a_refresh(make().await)
    );
    check!(checks, a_refresh_token_is_held_by_one_account(make().await));
}

/// A valid OAuth account named `name` expiring `secs` after [`T0`].
fn new_account(name: &str, platform: Platform, secs: i64) -> NewAccount {
    let credentials = Credentials::new()
        .with("access_token", format!("at-{name}"))
        .with("refresh_token", format!("rt-{name}"))
        .with("expires_at", (T0 + secs).to_string());
    NewAccount::new(name, platform, AccountType::OAuth, credentials)
}

async fn read_back(repo: &Repo, id: AccountId) -> Account {
    repo.get(id).await.expect("get").expect("account present")
}

async fn due_ids(repo: &Repo) -> Vec<i64> {
    let page = repo
        .list_due(at(86_400 * 365), None, 1000)
        .await
        .expect("list_due");
    page.accounts.iter().map(|a| a.id.get()).collect()
}

async fn create_assigns_fresh_ids_and_derives_the_expiry((repo, catalog): (Repo, Catalog)) {
    let mut ids = HashSet::new();
    for n in 0..5 {
        let mut new = new_account(&format!("a{n}"), Platform::Anthropic, 60 * n);
        new.extra.insert("org".into(), json!("o-1"));
        new.proxy = Some("http://u:p@10.0.0.7:3128".parse().expect("a proxy URL"));
        new.priority = 7;
        let created = catalog.create(new.clone()).await.expect("create");
        assert!(ids.insert(created.id), "id {} handed out twice", created.id);
        assert_eq!(
            created.credentials_version, 0,
            "a new account is at version 0"
        );
        assert_eq!(
            created.expires_at,
            Some(at(60 * n)),
            "expires_at derived from the credentials"
        );
        assert_eq!(
            created,
            new.clone().into_account(created.id),
            "stored as given"
        );
        assert_eq!(
            read_back(&repo, created.id).await,
            created,
            "the repository reads what create returned"
        );
    }
}

async fn create_never_reuses_an_inserted_id((repo, catalog): (Repo, Catalog)) {
    let first = catalog
        .create(new_account("first", Platform::OpenAi, 60))
        .await
        .expect("create");
    let explicit =
        new_account("explicit", Platform::OpenAi, 60).into_account(AccountId(first.id.get() + 1));
    repo.insert(explicit.clone()).await.expect("insert");
    let mut seen = HashSet::from([first.id, explicit.id]);
    for n in 0..3 {
        let created = catalog
            .create(new_account(&format!("next{n}"), Platform::OpenAi, 60))
            .await
            .expect("create after an explicit insert");
        assert!(
            seen.insert(created.id),
            "create reused id {} (explicit insert {})",
            created.id,
            explicit.id
        );
    }
    assert_eq!(
        read_back(&repo, explicit.id).await.name,
        "explicit",
        "the explicitly inserted account is untouched"
    );
}

async fn invalid_accounts_are_typed_errors_naming_the_field((_repo, catalog): (Repo, Catalog)) {
    let valid = new_account("valid", Platform::Gemini, 60);
    let mut blank = valid.clone();
    blank.name = "  ".into();
    let mut millis = valid.clone();
    millis
        .credentials
        .insert("expires_at", json!(1_893_456_000_000_i64));
    let mut no_refresh = valid.clone();
    no_refresh.credentials.remove("refresh_token");
    for (what, account, field) in [
        ("a blank name", blank, "name"),
        ("a millisecond expiry", millis, "credentials.expires_at"),
        (
            "an oauth account without refresh token",
            no_refresh,
            "credentials.refresh_token",
        ),
    ] {
        let error = catalog.create(account).await.expect_err(what);
        assert_eq!(error.kind(), StorageErrorKind::InvalidData, "{what}: kind");
        assert!(
            error.to_string().contains(field),
            "{what}: the error names {field}: {error}"
        );
        assert!(
            !error.to_string().contains("rt-valid"),
            "{what}: no token in the error"
        );
    }
    assert_eq!(
        catalog.count_by_status(None).await.expect("count").total(),
        0,
        "nothing stored"
    );
}

async fn import_is_all_or_nothing((repo, catalog): (Repo, Catalog)) {
    let mut bad = new_account("bad", Platform::OpenAi, 60);
    bad.name = String::new();
    let batch = vec![
        new_account("i0", Platform::OpenAi, 60),
        new_account("i1", Platform::OpenAi, 120),
        bad,
        new_account("i3", Platform::OpenAi, 180),
    ];
    let error = catalog
        .import(batch)
        .await
        .expect_err("a batch with an invalid entry");
    assert_eq!(error.kind(), StorageErrorKind::InvalidData, "kind");
    let text = error.to_string();
    assert!(
        text.contains("entry 2") && text.contains("name"),
        "the error names the entry and the field: {text}"
    );
    assert_eq!(
        catalog.count_by_status(None).await.expect("count").total(),
        0,
        "no entry of the failed batch is stored"
    );
    assert!(due_ids(&repo).await.is_empty(), "nothing is due");
    let names = ["j0", "j1", "j2"];
    let imported = catalog
        .import(
            names
                .iter()
                .map(|n| new_account(n, Platform::OpenAi, 60))
                .collect(),
        )
        .await
        .expect("a valid batch");
    assert_eq!(
        imported.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        names,
        "returned in order"
    );
    let ids: HashSet<AccountId> = imported.iter().map(|a| a.id).collect();
    assert_eq!(ids.len(), 3, "three fresh ids");
    for account in &imported {
        assert_eq!(
            read_back(&repo, account.id).await,
            *account,
            "stored as returned"
        );
    }
    assert!(
        catalog
            .import(Vec::new())
            .await
            .expect("empty import")
            .is_empty(),
        "an empty import stores nothing"
    );
}

async fn list_filters_and_pages_by_id((_repo, catalog): (Repo, Catalog)) {
    let mut expected_openai_active = Vec::new();
    for n in 0..9 {
        let platform = if n % 3 == 0 {
            Platform::Anthropic
        } else {
            Platform::OpenAi
        };
        let mut new = new_account(&format!("l{n}"), platform.clone(), 60);
        if n % 4 == 0 {
            new.status = AccountStatus::Disabled;
        }
        let created = catalog.create(new).await.expect("create");
        if platform == Platform::OpenAi && created.status == AccountStatus::Active {
            expected_openai_active.push(created.id);
        }
    }
    let filter = AccountFilter {
        platform: Some(Platform::OpenAi),
        status: Some(AccountStatus::Active),
    };
    let mut listed = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = catalog.list(&filter, after, 2).await.expect("list");
        assert!(page.corrupt.is_empty(), "no corrupt rows were stored");
        assert!(page.accounts.len() <= 2, "a page holds at most limit");
        listed.extend(page.accounts.iter().map(|a| a.id));
        match page.next {
            Some(next) => {
                assert_eq!(page.accounts.len(), 2, "a page with a next id is full");
                assert_eq!(
                    Some(next),
                    page.accounts.last().map(|a| a.id),
                    "next = last id"
                );
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(
        listed, expected_openai_active,
        "every active openai account once, by ascending id"
    );
    let all = catalog
        .list(&AccountFilter::default(), None, 100)
        .await
        .expect("list");
    assert_eq!(all.accounts.len(), 9, "no filter lists every account");
    assert_eq!(all.next, None, "a short page is the last");
}

async fn count_by_status_counts_per_platform((repo, catalog): (Repo, Catalog)) {
    for (n, platform, status) in [
        (0, Platform::Anthropic, AccountStatus::Active),
        (1, Platform::Anthropic, AccountStatus::Disabled),
        (2, Platform::OpenAi, AccountStatus::Active),
        (3, Platform::OpenAi, AccountStatus::Active),
    ] {
        let mut new = new_account(&format!("c{n}"), platform, 60);
        new.status = status;
        catalog.create(new).await.expect("create");
    }
    let openai = catalog
        .list(
            &AccountFilter {
                platform: Some(Platform::OpenAi),
                status: None,
            },
            None,
            10,
        )
        .await
        .expect("list");
    let marked = &openai.accounts[0];
    assert!(
        repo.set_error(marked.id, marked.credentials_version, "x")
            .await
            .expect("set_error")
    );
    let all = catalog.count_by_status(None).await.expect("count");
    assert_eq!(
        (all.active, all.disabled, all.error),
        (2, 1, 1),
        "all platforms"
    );
    assert_eq!(all.total(), 4, "total");
    let anthropic = catalog
        .count_by_status(Some(Platform::Anthropic))
        .await
        .expect("count");
    assert_eq!(
        (anthropic.active, anthropic.disabled, anthropic.error),
        (1, 1, 0),
        "anthropic only"
    );
    let none = catalog
        .count_by_status(Some(Platform::Gemini))
        .await
        .expect("count");
    assert_eq!(none.total(), 0, "a platform without accounts");
}

async fn update_metadata_touches_only_metadata((repo, catalog): (Repo, Catalog)) {
    let created = catalog
        .create(new_account("m", Platform::Anthropic, 60))
        .await
        .expect("create");
    let update = MetadataUpdate {
        name: Some("renamed".into()),
        status: Some(AccountStatus::Error),
        error_message: Some(Some("needs re-login".into())),
        extra: Some(
            json!({"tier": "pro"})
                .as_object()
                .cloned()
                .expect("an object"),
        ),
        proxy: Some(Some(
            "socks5h://10.0.0.8:1080".parse().expect("a proxy URL"),
        )),
        priority: Some(-3),
    };
    let updated = catalog
        .update_metadata(created.id, &update)
        .await
        .expect("update_metadata");
    let mut expected = created.clone();
    update.apply_to(&mut expected);
    assert_eq!(updated, expected, "every given field and nothing else");
    assert_eq!(
        (
            updated.credentials.clone(),
            updated.credentials_version,
            updated.expires_at
        ),
        (created.credentials.clone(), 0, created.expires_at),
        "credentials, version and expiry untouched"
    );
    assert_eq!(
        read_back(&repo, created.id).await,
        updated,
        "stored as returned"
    );
    let partial = MetadataUpdate {
        proxy: Some(None),
        ..MetadataUpdate::default()
    };
    let cleared = catalog
        .update_metadata(created.id, &partial)
        .await
        .expect("update_metadata");
    assert_eq!(
        cleared,
        Account {
            proxy: None,
            ..updated
        },
        "a partial update changes only its field"
    );
    let missing = catalog
        .update_metadata(AccountId(404_404), &partial)
        .await
        .expect_err("a missing account");
    assert_eq!(missing.kind(), StorageErrorKind::NotFound, "kind");
    let blank = MetadataUpdate {
        name: Some(" ".into()),
        ..MetadataUpdate::default()
    };
    let invalid = catalog
        .update_metadata(created.id, &blank)
        .await
        .expect_err("a blank name");
    assert_eq!(invalid.kind(), StorageErrorKind::InvalidData, "kind");
    assert_eq!(
        read_back(&repo, created.id).await,
        cleared,
        "nothing written"
    );
}

async fn status_updates_move_the_due_listing((repo, catalog): (Repo, Catalog)) {
    let created = catalog
        .create(new_account("d", Platform::Anthropic, 60))
        .await
        .expect("create");
    assert_eq!(
        due_ids(&repo).await,
        vec![created.id.get()],
        "due while active"
    );
    let disable = MetadataUpdate {
        status: Some(AccountStatus::Disabled),
        ..MetadataUpdate::default()
    };
    catalog
        .update_metadata(created.id, &disable)
        .await
        .expect("disable");
    assert!(
        due_ids(&repo).await.is_empty(),
        "a disabled account is not due"
    );
    let enable = MetadataUpdate {
        status: Some(AccountStatus::Active),
        ..MetadataUpdate::default()
    };
    catalog
        .update_metadata(created.id, &enable)
        .await
        .expect("enable");
    assert_eq!(due_ids(&repo).await, vec![created.id.get()], "due again");
}

async fn delete_removes_the_account((repo, catalog): (Repo, Catalog)) {
    let kept = catalog
        .create(new_account("kept", Platform::Anthropic, 60))
        .await
        .expect("create");
    let gone = catalog
        .create(new_account("gone", Platform::Anthropic, 60))
        .await
        .expect("create");
    assert!(catalog.delete(gone.id).await.expect("delete"), "deleted");
    assert_eq!(
        repo.get(gone.id).await.expect("get"),
        None,
        "get finds nothing"
    );
    assert!(
        !catalog.delete(gone.id).await.expect("delete"),
        "Ok(false) the second time"
    );
    assert_eq!(due_ids(&repo).await, vec![kept.id.get()], "no longer due");
    let outcome = repo
        .compare_and_set_credentials(gone.id, CasExpectation::of(&gone), &gone.credentials)
        .await
        .expect("compare_and_set_credentials");
    assert_eq!(
        outcome,
        CasOutcome::NotFound,
        "a refresh's write finds nothing"
    );
}

async fn replace_credentials_bumps_the_version_and_fences_out_a_refresh(
    (repo, catalog): (Repo, Catalog),
) {
    let created = catalog
        .create(new_account("r", Platform::OpenAi, 60))
        .await
        .expect("create");
    let marked = repo
        .set_error(created.id, 0, "invalid_grant")
        .await
        .expect("set_error");
    assert!(marked, "marked");
    let before = read_back(&repo, created.id).await;
    let relogin = Credentials::new()
        .with("access_token", "at-relogin")
        .with("refresh_token", "rt-relogin")
        .with("expires_at", (T0 + 7200).to_string());
    let replaced = catalog
        .replace_credentials(created.id, &relogin)
        .await
        .expect("replace_credentials");
    assert_eq!(replaced.credentials, relogin, "the new credentials");
    assert_eq!(replaced.credentials_version, 1, "the version is bumped");
    assert_eq!(replaced.expires_at, Some(at(7200)), "the expiry re-derived");
    assert_eq!(
        Account {
            credentials: before.credentials.clone(),
            credentials_version: before.credentials_version,
            expires_at: before.expires_at,
            ..replaced.clone()
        },
        before,
        "status, error and the rest untouched"
    );
    // A refresh that read the account before the re-login loses its write.
    let late = created.credentials.clone().with("access_token", "at-late");
    let outcome = repo
        .compare_and_set_credentials(created.id, CasExpectation::of(&created), &late)
        .await
        .expect("compare_and_set_credentials");
    assert_eq!(
        outcome,
        CasOutcome::VersionMismatch { current_version: 1 },
        "the in-flight refresh's fenced write loses"
    );
    assert_eq!(
        read_back(&repo, created.id).await,
        replaced,
        "the re-login stands"
    );
    let missing = catalog
        .replace_credentials(AccountId(404_404), &relogin)
        .await
        .expect_err("a missing account");
    assert_eq!(missing.kind(), StorageErrorKind::NotFound, "kind");
    let millis = relogin
        .clone()
        .with("expires_at", json!(1_893_456_000_000_i64));
    let invalid = catalog
        .replace_credentials(created.id, &millis)
        .await
        .expect_err("a millisecond expiry");
    assert_eq!(invalid.kind(), StorageErrorKind::InvalidData, "kind");
    assert_eq!(
        read_back(&repo, created.id).await,
        replaced,
        "nothing written"
    );
}

/// Asserts `error` is the typed refusal of a held refresh token.
fn assert_taken(what: &str, error: &StorageError, expected: RefreshTokenTaken) {
    assert_eq!(error.kind(), StorageErrorKind::Conflict, "{what}: kind");
    assert_eq!(
        error.taken_refresh_token(),
        Some(expected),
        "{what}: names the entry and the holder: {error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("credentials.refresh_token") && !text.contains("rt-"),
        "{what}: names the field, never the token: {text}"
    );
    if let TokenHolder::Account(id) = expected.holder {
        assert!(
            text.contains(&format!("account {id}")),
            "{what}: names account {id}: {text}"
        );
    }
}

async fn a_refresh_token_is_held_by_one_account((repo, catalog): (Repo, Catalog)) {
    let first = catalog
        .create(new_account("held", Platform::Anthropic, 60))
        .await
        .expect("create");
    let holder = TokenHolder::Account(first.id);
    let mut twin = new_account("twin", Platform::Anthropic, 60);
    twin.credentials = first.credentials.clone().with("access_token", "at-twin");
    let error = catalog
        .create(twin.clone())
        .await
        .expect_err("create with a held token");
    assert_taken(
        "create",
        &error,
        RefreshTokenTaken {
            entry: None,
            holder,
        },
    );
    let error = catalog
        .import(vec![new_account("fresh", Platform::Anthropic, 60), twin])
        .await
        .expect_err("import with a held token");
    assert_taken(
        "import",
        &error,
        RefreshTokenTaken {
            entry: Some(1),
            holder,
        },
    );
    let error = catalog
        .import(vec![
            new_account("x0", Platform::OpenAi, 60),
            new_account("dup", Platform::OpenAi, 60),
            new_account("dup", Platform::OpenAi, 90),
        ])
        .await
        .expect_err("import with a token twice");
    assert_taken(
        "import within the file",
        &error,
        RefreshTokenTaken {
            entry: Some(2),
            holder: TokenHolder::Entry(1),
        },
    );
    assert_eq!(
        catalog.count_by_status(None).await.expect("count").total(),
        1,
        "nothing of the refused writes is stored"
    );
    let other = catalog
        .create(new_account("other", Platform::Anthropic, 60))
        .await
        .expect("create");
    let error = catalog
        .replace_credentials(other.id, &first.credentials)
        .await
        .expect_err("replace with a held token");
    assert_taken(
        "replace_credentials",
        &error,
        RefreshTokenTaken {
            entry: None,
            holder,
        },
    );
    assert_eq!(
        read_back(&repo, other.id).await,
        other,
        "the refused replace changed nothing"
    );
    let relogin = first.credentials.clone().with("access_token", "at-relogin");
    let replaced = catalog
        .replace_credentials(first.id, &relogin)
        .await
        .expect("an account may keep its own refresh token");
    assert_eq!(replaced.credentials_version, 1, "stored");
    let keyless = || {
        NewAccount::new(
            "key",
            Platform::OpenAi,
            AccountType::ApiKey,
            Credentials::new().with("api_key", "k"),
        )
    };
    catalog
        .import(vec![keyless(), keyless()])
        .await
        .expect("accounts without a refresh token never conflict");
}
