//! [`CredentialChange`]: what a token answer contributes to the stored
//! credentials.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::{Credentials, add_duration, keys};

/// The lifetime assumed for a new access token whose answer carries no
/// readable expiry (RFC 6749 makes `expires_in` optional): short enough to
/// refresh early, long enough not to refresh on every request.
pub const ASSUMED_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The keys an answer changes in the stored credentials, and what the
/// change means.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialChange {
    /// The changed keys, to merge over the stored map (and to re-apply over
    /// a newer one without reverting another writer's keys).
    pub delta: Credentials,
    /// The answer replaces the stored refresh token.
    pub rotated: bool,
    /// The answer carries an access token (new, or the same one reissued).
    pub usable: bool,
}

impl CredentialChange {
    /// What `issued` (an executor's answer, merged over the old map or not)
    /// changes in `base`. Blank token values never win. An expiry belongs to
    /// the answer's access token: an answer without an access token
    /// contributes its refresh-token rotation alone, and an access token
    /// without an expiry of its own (none readable, or only the stored one
    /// and that one past) gets [`ASSUMED_TOKEN_LIFETIME`] from `now` rather
    /// than the old, past expiry.
    pub fn of(issued: Credentials, base: &Credentials, now: DateTime<Utc>) -> Self {
        let answered = issued.access_token().is_some();
        let mut merged = issued.merged_over(base);
        if let Err(error) = merged.canonicalize() {
            warn!(%error, "answer has an unreadable expires_at; assuming a lifetime");
            merged.remove(keys::EXPIRES_AT);
        }
        let mut delta = merged.changed_since(base);
        // An answer merged over the stored map (as executors return it)
        // carries the stored access token even when the upstream sent none:
        // the stored token, unchanged and with its stored expiry already
        // past, is not an access token this answer brought, and must not
        // be revived with an assumed lifetime.
        let revived = delta.get(keys::ACCESS_TOKEN).is_none()
            && delta.get(keys::EXPIRES_AT).is_none()
            && merged
                .expires_at()
                .ok()
                .flatten()
                .is_none_or(|at| at <= now);
        let usable = answered && !revived;
        let rotated = delta
            .refresh_token()
            .is_some_and(|rt| Some(rt) != base.refresh_token());
        if !usable {
            let rotation = delta.get(keys::REFRESH_TOKEN).filter(|_| rotated).cloned();
            delta = Credentials::new();
            if let Some(token) = rotation {
                delta.insert(keys::REFRESH_TOKEN, token);
            }
        } else if delta.get(keys::EXPIRES_AT).is_none()
            && merged
                .expires_at()
                .ok()
                .flatten()
                .is_none_or(|at| at <= now)
        {
            // The new access token has no expiry of its own (none, or only
            // the old one, already past): assume a lifetime. An expiry the
            // answer changed stands, even one already past (an answer
            // applied late is refreshed again, never served expired); and
            // so does one equal to the stored expiry while it is ahead (a
            // refresh in the same second as the previous one answers the
            // same expiry: taking that for "no expiry" would stamp the
            // assumed hour on a token that lives ten minutes).
            delta.set_expires_at(add_duration(now, ASSUMED_TOKEN_LIFETIME));
        }
        Self {
            delta,
            rotated,
            usable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(v: serde_json::Value) -> Credentials {
        Credentials::try_from(v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn an_answer_without_an_access_token_contributes_only_its_rotation() {
        let base = creds(json!({"access_token": "a1", "refresh_token": "r1", "expires_at": "1"}));
        let issued =
            creds(json!({"access_token": "", "refresh_token": "r2", "expires_at": "1700003600"}));
        let change = CredentialChange::of(issued, &base, now());
        assert!(!change.usable && change.rotated);
        assert_eq!(change.delta, creds(json!({"refresh_token": "r2"})));
    }

    #[test]
    fn an_answer_in_the_same_second_keeps_its_own_short_expiry() {
        // The previous refresh, one second ago by the same clock second,
        // stored now + 600 s; this answer says now + 600 s again.
        let at = (now().timestamp() + 600).to_string();
        let base = creds(json!({"access_token": "a1", "refresh_token": "r1", "expires_at": at}));
        let issued = creds(json!({"access_token": "a2", "refresh_token": "r2", "expires_at": at}));
        let change = CredentialChange::of(issued, &base, now());
        let merged = change.delta.merged_over(&base);
        assert_eq!(
            merged.expires_at().unwrap().unwrap().timestamp(),
            now().timestamp() + 600,
            "not the assumed hour"
        );
    }

    #[test]
    fn an_access_token_without_an_expiry_gets_the_assumed_lifetime() {
        let base = creds(json!({"access_token": "a1", "refresh_token": "r1", "expires_at": "1"}));
        let issued = creds(json!({"access_token": "a2"})).merged_over(&base);
        let change = CredentialChange::of(issued, &base, now());
        assert!(change.usable && !change.rotated);
        let at = change.delta.expires_at().unwrap().unwrap();
        assert_eq!(at, add_duration(now(), ASSUMED_TOKEN_LIFETIME));
    }
}
