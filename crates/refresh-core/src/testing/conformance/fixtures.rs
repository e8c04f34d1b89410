//! Accounts and instants used by the conformance suites.

use chrono::{DateTime, Duration as Span, Utc};

use crate::domain::{Account, Credentials, Platform};

/// The fixed instant the suites build expiries from (2030-01-01T00:00:00Z).
pub const T0: i64 = 1_893_456_000;

/// An active OAuth Claude account whose token expires `expires_in` seconds
/// after [`T0`] (`None`: no `expires_at` key).
pub fn account_expiring(id: i64, expires_in: Option<i64>) -> Account {
    let mut creds = Credentials::new()
        .with("access_token", format!("at-{id}-0"))
        .with("refresh_token", format!("rt-{id}-0"));
    if let Some(secs) = expires_in {
        creds.insert("expires_at", (T0 + secs).to_string());
    }
    Account::oauth(id, Platform::Anthropic, creds)
}

/// The instant `secs` seconds after [`T0`].
pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0, 0).expect("T0 is a valid instant") + Span::seconds(secs)
}
