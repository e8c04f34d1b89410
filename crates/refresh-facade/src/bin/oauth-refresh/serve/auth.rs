//! Bearer API keys, compared in constant time: each configured key is
//! kept as its SHA-256 and the presented key is hashed the same way, so
//! the comparison neither stops early nor depends on the key's length.

use refresh_facade::Secret;
use refresh_facade::core::Fingerprint;
use subtle::{Choice, ConstantTimeEq};

/// The accepted keys, as digests.
pub(crate) struct ApiKeys {
    digests: Vec<Fingerprint>,
}

impl ApiKeys {
    pub(crate) fn new(keys: &[Secret]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|k| Fingerprint::of_bytes(k.expose().as_bytes()))
                .collect(),
        }
    }

    /// Whether no key is configured (`--insecure-loopback`).
    pub(crate) fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries one of the keys.
    /// Every key is compared, whatever matched.
    pub(crate) fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, key)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented = Fingerprint::of_bytes(key.trim().as_bytes());
        let mut matched = Choice::from(0);
        for digest in &self.digests {
            matched |= digest.as_bytes().ct_eq(presented.as_bytes());
        }
        matched.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_bearer_key_is_accepted() {
        let keys = ApiKeys::new(&[Secret::from("k-one"), Secret::from("k-two")]);
        assert!(keys.accepts(Some("Bearer k-two")));
        assert!(keys.accepts(Some("bearer k-one")));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer k-three"),
            Some("Basic k-one"),
            Some("Bearer k-on"),
        ] {
            assert!(!keys.accepts(bad), "{bad:?}");
        }
        assert!(!ApiKeys::new(&[]).accepts(Some("Bearer ")));
    }
}
