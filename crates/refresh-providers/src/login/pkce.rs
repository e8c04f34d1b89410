//! Random values of a login: the PKCE verifier and its S256 challenge
//! (RFC 7636), the `state`, the session id; and the constant-time state
//! comparison.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use refresh_core::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::LoginError;

/// `n` bytes from the operating system's CSPRNG, base64url without
/// padding (32 bytes → 43 characters, 64 → 86).
///
/// # Errors
/// [`LoginError::RandomUnavailable`] when the system source fails.
pub(crate) fn random_token(n: usize) -> Result<Secret, LoginError> {
    let mut bytes = vec![0_u8; n];
    getrandom::fill(&mut bytes).map_err(|_| LoginError::RandomUnavailable)?;
    Ok(Secret::from(URL_SAFE_NO_PAD.encode(&bytes)))
}

/// A fresh session id: a random (v4) UUID.
pub(crate) fn session_id() -> Result<String, LoginError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| LoginError::RandomUnavailable)?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string())
}

/// `BASE64URL-NOPAD(SHA256(verifier))`: the S256 code challenge.
pub(crate) fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `a` equals `b`, in time independent of where they differ (the
/// lengths are not secret).
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b_challenge() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn tokens_have_the_expected_length_alphabet_and_differ() {
        let a = random_token(32).unwrap();
        let b = random_token(32).unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_eq!(random_token(64).unwrap().expose().len(), 86);
        assert_ne!(a, b);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let id = session_id().unwrap();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_ne!(id, session_id().unwrap());
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "a"));
    }
}
