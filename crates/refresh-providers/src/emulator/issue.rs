//! Random token values and unsigned JWTs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// `prefix` followed by 40 random alphanumerics: long and mixed-case, so
/// every redaction rule treats it as a token.
pub(crate) fn token(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 40);
    out.push_str(prefix);
    out.extend(std::iter::repeat_with(fastrand::alphanumeric).take(40));
    out
}

/// An unsigned JWT (`alg: none` is not used: the signature is random
/// bytes, as no client verifies it).
pub(crate) fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"emulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(token("sig").as_bytes());
    format!("{header}.{payload}.{signature}")
}
