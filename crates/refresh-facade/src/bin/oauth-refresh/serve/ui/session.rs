//! Sessions of the status page: a signed cookie, and the nonces of
//! sessions logged out ([`Revoked`]).
//!
//! Logging in with one of `serve.api_keys` sets `oauth_refresh_session` =
//! `v1.<expires unix>.<nonce>.<mac>`, where `mac` is HMAC-SHA256 over
//! `v1.<expires>.<nonce>` with a key derived from that API key
//! (SHA-256 of a fixed label and the key). Every `serve` process with the
//! same keys accepts it; removing the key from the configuration ends its
//! sessions. The CSRF token of a session is another HMAC of its nonce
//! with the same key, so forms carry it and no store is needed.
//!
//! Logout clears the cookie in the browser and records the session's nonce
//! as revoked until the cookie would have expired, so a copy of the cookie
//! is refused by this process. The table is in memory: another `serve`
//! process with the same keys, or this one restarted, still accepts the
//! copy until it expires (`serve.ui.session_ttl`).

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use refresh_facade::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "oauth_refresh_session";
/// The login form's double-submit cookie.
pub(super) const LOGIN_COOKIE: &str = "oauth_refresh_login";

/// One derived signing key per configured API key.
pub(crate) struct SessionKeys {
    keys: Vec<[u8; 32]>,
    /// SHA-256 of each API key, to recognise a presented one.
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// A verified session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    key: usize,
    nonce: String,
    expires: DateTime<Utc>,
}

/// Sessions logged out before they expired: nonce -> the cookie's expiry.
/// Entries are dropped once expired, so the table holds at most the
/// sessions logged out within one `session_ttl`.
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    nonces: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
}

impl Revoked {
    /// Refuses `session` from now on (until it expires anyway).
    pub(crate) fn revoke(&self, session: &Session, now: DateTime<Utc>) {
        let mut nonces = self.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.retain(|_, expires| *expires > now);
        nonces.insert(session.nonce.clone(), session.expires);
    }

    /// Whether `session` was logged out.
    pub(crate) fn contains(&self, session: &Session) -> bool {
        self.nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&session.nonce)
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A fresh random nonce (128 bits, hex).
pub(super) fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether two texts are equal, in constant time for equal lengths.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SessionKeys {
    pub(crate) fn new(api_keys: &[Secret]) -> Self {
        Self {
            keys: api_keys
                .iter()
                .map(|k| {
                    sha256(&[
                        b"oauth-refresh status page session\n",
                        k.expose().as_bytes(),
                    ])
                })
                .collect(),
            digests: api_keys
                .iter()
                .map(|k| sha256(&[k.expose().as_bytes()]))
                .collect(),
        }
    }

    /// Whether no key is configured (no one can log in).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn mac(&self, key: usize, message: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.keys[key]).expect("any key length");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The index of the API key `presented` is, comparing with every key.
    pub(crate) fn key_index(&self, presented: &str) -> Option<usize> {
        let digest = sha256(&[presented.trim().as_bytes()]);
        let mut found = None;
        for (i, d) in self.digests.iter().enumerate() {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(i);
            }
        }
        found
    }

    /// A new session signed with key `key`, expiring at `expires`: the
    /// cookie value.
    pub(crate) fn issue(&self, key: usize, expires: DateTime<Utc>) -> String {
        let body = format!("v1.{}.{}", expires.timestamp(), nonce());
        let mac = self.mac(key, &body);
        format!("{body}.{mac}")
    }

    /// The session a cookie value carries, if it is signed by a configured
    /// key and not expired at `now`.
    pub(crate) fn verify(&self, cookie: &str, now: DateTime<Utc>) -> Option<Session> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (version, expires, nonce) = (parts.next()?, parts.next()?, parts.next()?);
        if version != "v1" || parts.next().is_some() || nonce.len() != 32 {
            return None;
        }
        let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        let mut key = None;
        for i in 0..self.keys.len() {
            if same(&self.mac(i, body), mac) {
                key = Some(i);
            }
        }
        let key = key?;
        (expires > now).then(|| Session {
            key,
            nonce: nonce.to_owned(),
            expires,
        })
    }

    /// The CSRF token of `session`.
    pub(crate) fn csrf(&self, session: &Session) -> String {
        self.mac(session.key, &format!("csrf.{}", session.nonce))
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(super) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, `Secure`
/// when `secure`; `max_age` 0 deletes it.
pub(super) fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::new(&[Secret::from("key-one"), Secret::from("key-two")])
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_only_with_its_keys() {
        let k = keys();
        assert_eq!(k.key_index("key-two"), Some(1));
        assert_eq!(k.key_index("key-tw"), None);
        let cookie = k.issue(1, at(3600));
        assert!(
            k.verify(&cookie, at(3599)).is_some(),
            "valid until it expires"
        );
        assert!(k.verify(&cookie, at(3600)).is_none(), "expired");
        // Another deployment's keys, or the key removed: refused.
        let other = SessionKeys::new(&[Secret::from("key-one")]);
        assert!(other.verify(&cookie, at(0)).is_none());
        // Tampering with any part breaks the MAC.
        let later = cookie.replacen(
            &at(3600).timestamp().to_string(),
            &at(9999).timestamp().to_string(),
            1,
        );
        assert!(k.verify(&later, at(0)).is_none());
        for bad in [
            "",
            "v1",
            "v1.1.2.3",
            "v2.1.abc.def",
            &cookie[..cookie.len() - 1],
        ] {
            assert!(k.verify(bad, at(0)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_revoked_session_is_refused_and_forgotten_once_expired() {
        let k = keys();
        let revoked = Revoked::default();
        let one = k.verify(&k.issue(0, at(60)), at(0)).unwrap();
        let two = k.verify(&k.issue(0, at(600)), at(0)).unwrap();
        revoked.revoke(&one, at(0));
        assert!(revoked.contains(&one));
        assert!(!revoked.contains(&two));
        // A later logout prunes the expired entry.
        revoked.revoke(&two, at(61));
        assert!(!revoked.contains(&one));
        assert!(revoked.contains(&two));
    }

    #[test]
    fn the_csrf_token_is_per_session_and_never_the_key() {
        let k = keys();
        let one = k.verify(&k.issue(0, at(60)), at(0)).unwrap();
        let two = k.verify(&k.issue(0, at(60)), at(0)).unwrap();
        let (a, b) = (k.csrf(&one), k.csrf(&two));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(!a.contains("key-one"));
    }

    #[test]
    fn cookies_are_parsed_and_set_strictly() {
        assert_eq!(
            cookie("a=1; oauth_refresh_session=xyz; b=2", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("xoauth_refresh_session=1", SESSION_COOKIE), None);
        let set = set_cookie(SESSION_COOKIE, "v", 60, true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("Secure")
        );
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false).contains("Secure"));
    }
}
