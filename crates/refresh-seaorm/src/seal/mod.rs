//! Credentials at rest: AES-256-GCM envelopes ([`AesGcmSealer`]), the keys
//! ([`SealingKey`], [`SealingConfig`]) and the storage mode ([`Sealing`]).

mod aes;
mod config;
mod key;

pub use aes::AesGcmSealer;
pub use config::{ENV_KEY, ENV_PREVIOUS_KEYS, Sealing, SealingConfig};
pub use key::SealingKey;

/// What a sealed value is bound to: the associated data of its envelope.
/// A ciphertext copied to another row (or another column) does not open.
pub(crate) mod context {
    use refresh_core::{AccountId, ClaimKey, Platform};

    /// An account's credentials: its id and platform.
    pub(crate) fn credentials(id: AccountId, platform: &Platform) -> Vec<u8> {
        format!("oauth-refresh/v1/accounts/{id}/{platform}/credentials").into_bytes()
    }

    /// An account's proxy URL (it may carry a password): its id.
    pub(crate) fn proxy(id: AccountId) -> Vec<u8> {
        format!("oauth-refresh/v1/accounts/{id}/proxy_url").into_bytes()
    }

    /// The answer stored in a generation claim: its platform and
    /// fingerprint.
    pub(crate) fn answer(key: &ClaimKey) -> Vec<u8> {
        format!(
            "oauth-refresh/v1/claims/{}/{}/answer",
            key.platform,
            key.fingerprint.to_hex()
        )
        .into_bytes()
    }

    /// A login session's payload: its id and platform.
    pub(crate) fn login_session(id: &str, platform: &Platform) -> Vec<u8> {
        format!("oauth-refresh/v1/login_sessions/{id}/{platform}/payload").into_bytes()
    }
}
