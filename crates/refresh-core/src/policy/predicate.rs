//! The one due predicate shared by the request path, the flow's double-check
//! and the background refresher (REFERENCE.md defect 10).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::Account;

/// Whether the account's access token must be refreshed now: its expiry is
/// unknown or unreadable, or `expires_at − now ≤ window`.
///
/// An unknown expiry counts as due: the refresh writes a canonical expiry,
/// which heals the record, instead of locking and re-reading on every cache
/// miss without ever refreshing (defect 10).
pub fn needs_refresh(account: &Account, window: Duration, now: DateTime<Utc>) -> bool {
    match account.credentials.expires_at() {
        Ok(Some(at)) => at <= crate::domain::add_duration(now, window),
        Ok(None) | Err(_) => true,
    }
}

/// Whether a token with this expiry may still be handed out: unknown
/// expiries are trusted, known ones must lie in the future.
pub fn token_is_valid(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_none_or(|at| at > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Credentials, Platform};
    use serde_json::{Value, json};

    const WINDOW: Duration = Duration::from_secs(180);

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn account(expires_at: Option<Value>) -> Account {
        let mut creds = Credentials::new().with("access_token", "a");
        if let Some(v) = expires_at {
            creds.insert("expires_at", v);
        }
        Account::oauth(1, Platform::Anthropic, creds)
    }

    #[test]
    fn predicate_unix_seconds_string_past_and_future() {
        assert!(needs_refresh(
            &account(Some(json!("1699999000"))),
            WINDOW,
            now()
        ));
        assert!(!needs_refresh(
            &account(Some(json!("1700003600"))),
            WINDOW,
            now()
        ));
    }

    #[test]
    fn predicate_number_past_and_future() {
        assert!(needs_refresh(
            &account(Some(json!(1_699_999_000))),
            WINDOW,
            now()
        ));
        assert!(!needs_refresh(
            &account(Some(json!(1_700_003_600))),
            WINDOW,
            now()
        ));
    }

    #[test]
    fn predicate_rfc3339_past_and_future() {
        assert!(needs_refresh(
            &account(Some(json!("2023-11-14T22:00:00Z"))),
            WINDOW,
            now()
        ));
        assert!(!needs_refresh(
            &account(Some(json!("2023-11-15T08:13:20+08:00"))),
            WINDOW,
            now()
        ));
    }

    #[test]
    fn predicate_window_boundary_is_inclusive() {
        assert!(needs_refresh(
            &account(Some(json!("1700000180"))),
            WINDOW,
            now()
        ));
        assert!(!needs_refresh(
            &account(Some(json!("1700000181"))),
            WINDOW,
            now()
        ));
    }

    #[test]
    fn predicate_missing_null_invalid_and_no_credentials_are_due() {
        assert!(needs_refresh(&account(None), WINDOW, now()));
        assert!(needs_refresh(&account(Some(Value::Null)), WINDOW, now()));
        assert!(needs_refresh(&account(Some(json!("soon"))), WINDOW, now()));
        assert!(needs_refresh(
            &account(Some(json!(1_700_000_000_000_i64))),
            WINDOW,
            now()
        ));
        let bare = Account::oauth(1, Platform::Anthropic, Credentials::new());
        assert!(needs_refresh(&bare, WINDOW, now()));
    }

    #[test]
    fn validity_trusts_unknown_and_rejects_past() {
        assert!(token_is_valid(None, now()));
        assert!(!token_is_valid(Some(now()), now()));
        assert!(token_is_valid(
            Some(now() + chrono::Duration::seconds(1)),
            now()
        ));
    }
}
