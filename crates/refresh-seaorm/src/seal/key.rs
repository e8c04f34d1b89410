//! [`SealingKey`]: one AES-256 key, never shown.

use std::fmt;

use aes_gcm::aead::{KeyInit, OsRng, rand_core::RngCore};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use refresh_core::ConfigError;

/// A 256-bit key. `Debug` shows only its id; the bytes are wiped on drop.
#[derive(Clone)]
pub struct SealingKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
}

impl SealingKey {
    /// Parses a key: 32 bytes in standard base64 (44 characters) or in hex
    /// (64 digits), surrounding whitespace ignored.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `field`, without the text.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            STANDARD.decode(text).ok()
        };
        let decoded = Zeroizing::new(decoded.ok_or_else(|| ConfigError::Invalid {
            field,
            reason: "expected 32 bytes as base64 (44 characters) or hex (64 digits)".into(),
        })?);
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| ConfigError::Invalid {
                field,
                reason: format!("a key is 32 bytes, this one is {}", decoded.len()),
            })?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"oauth-refresh sealing key id v1\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            bytes: Zeroizing::new(bytes),
            id,
        }
    }

    /// The key as standard base64, to write into a key file or a secret
    /// store (the only way to see it).
    pub fn expose_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.bytes))
    }

    /// The key id envelopes carry: 8 hex digits of a SHA-256 of the key
    /// (one-way; tells keys apart, reveals nothing usable).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn cipher(&self) -> aes_gcm::Aes256Gcm {
        aes_gcm::Aes256Gcm::new((&*self.bytes).into())
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey(id {}, [redacted])", self.id)
    }
}

impl PartialEq for SealingKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_base64_and_hex_and_never_show() {
        let key = SealingKey::generate();
        let b64 = key.expose_base64();
        let again = SealingKey::parse("k", &b64).expect("base64");
        assert_eq!(again.id(), key.id());
        let hex: String = STANDARD
            .decode(b64.as_str())
            .expect("b64")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(SealingKey::parse("k", &hex).expect("hex").id(), key.id());
        assert!(!format!("{key:?}").contains(b64.as_str()));
        for bad in ["", "short", "AAAA", &"a".repeat(63)] {
            let error = SealingKey::parse("encryption_key", bad).expect_err(bad);
            assert!(error.to_string().contains("encryption_key"));
        }
        assert_ne!(SealingKey::generate().id(), key.id(), "ids differ per key");
    }
}
