//! Conformance suite of [`RecoveryStore`].

use std::future::Future;
use std::sync::Arc;

use super::fixtures::{T0, account_expiring};
use crate::domain::AccountId;
use crate::ports::{RecoveryRecord, RecoveryStore};

fn record(id: i64, base_version: u64) -> RecoveryRecord {
    RecoveryRecord {
        account_id: AccountId(id),
        base_version,
        consumed_refresh_token: Some(format!("rt-{id}-0").into()),
        credentials: account_expiring(id, Some(3600))
            .credentials
            .with("refresh_token", format!("rt-{id}-recovered-{base_version}")),
        created_at: chrono::DateTime::from_timestamp(T0, 0).expect("valid"),
        pending: base_version % 2 == 1,
    }
}

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
/// On the first violated contract clause, naming the check.
pub async fn recovery_store_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn RecoveryStore>>,
{
    let store = make().await;
    assert!(
        store.load(AccountId(1)).await.expect("load").is_none(),
        "load_of_missing_record_is_none"
    );

    let store = make().await;
    store.save(&record(1, 3)).await.expect("save");
    assert_eq!(
        store.load(AccountId(1)).await.expect("load"),
        Some(record(1, 3)),
        "save_then_load_round_trips"
    );
    assert!(
        store.load(AccountId(2)).await.expect("load").is_none(),
        "records_are_per_account"
    );

    let store = make().await;
    store.save(&record(1, 3)).await.expect("save");
    store.save(&record(1, 4)).await.expect("save");
    assert_eq!(
        store.load(AccountId(1)).await.expect("load"),
        Some(record(1, 4)),
        "save_replaces_the_accounts_record"
    );

    let store = make().await;
    store.save(&record(1, 4)).await.expect("save");
    store.remove(AccountId(1), 3).await.expect("remove");
    assert_eq!(
        store.load(AccountId(1)).await.expect("load"),
        Some(record(1, 4)),
        "remove_with_another_base_version_keeps_the_record"
    );
    store.remove(AccountId(1), 4).await.expect("remove");
    assert!(
        store.load(AccountId(1)).await.expect("load").is_none(),
        "remove_with_matching_base_version_deletes"
    );
}
