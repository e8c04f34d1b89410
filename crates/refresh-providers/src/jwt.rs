//! The claims of a JWT's payload, decoded without signature verification
//! (they only label an account, as every peer reads them).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The claims of `token`'s payload (its second dot-separated part,
/// base64url with or without padding); `None` when that is not a JSON
/// object.
pub(crate) fn claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}
