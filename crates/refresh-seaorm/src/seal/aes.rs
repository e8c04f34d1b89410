//! [`AesGcmSealer`]: AES-256-GCM envelopes with a key id and a random
//! nonce per seal.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::SealingKey;
use refresh_core::{SealError, Sealer};

/// The envelope's version tag; plaintext JSON starts with `{`, never this.
const TAG: &str = "s1";
/// Nonce bytes (96 bits, GCM's standard).
const NONCE: usize = 12;

/// Seals with its current key, opens with any key it holds.
///
/// Envelope: `s1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`; the
/// context is the GCM associated data, so the envelope carries nothing of
/// it.
pub struct AesGcmSealer {
    current: String,
    ciphers: HashMap<String, Aes256Gcm>,
}

impl AesGcmSealer {
    /// A sealer that seals with `current` and also opens values sealed
    /// with any of `previous` (key rotation).
    pub fn new(current: &SealingKey, previous: &[SealingKey]) -> Self {
        let mut ciphers: HashMap<String, Aes256Gcm> = previous
            .iter()
            .map(|k| (k.id().to_owned(), k.cipher()))
            .collect();
        ciphers.insert(current.id().to_owned(), current.cipher());
        Self {
            current: current.id().to_owned(),
            ciphers,
        }
    }

    /// The key ids this sealer can open.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.ciphers.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    fn split(envelope: &str) -> Result<(&str, &str), SealError> {
        let mut parts = envelope.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(TAG), Some(key_id), Some(body)) if !key_id.is_empty() => Ok((key_id, body)),
            _ => Err(SealError::Malformed {
                reason: "expected s1.<key id>.<data>",
            }),
        }
    }
}

impl fmt::Debug for AesGcmSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AesGcmSealer")
            .field("current", &self.current)
            .field("keys", &self.key_ids())
            .finish()
    }
}

impl Sealer for AesGcmSealer {
    fn current_key_id(&self) -> &str {
        &self.current
    }

    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, SealError> {
        let cipher = &self.ciphers[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Failed {
                reason: "encryption failed",
            })?;
        let mut body = Vec::with_capacity(NONCE + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{TAG}.{}.{}",
            self.current,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    fn open(&self, envelope: &str, context: &[u8]) -> Result<Vec<u8>, SealError> {
        let (key_id, body) = Self::split(envelope)?;
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| SealError::UnknownKey {
                key_id: key_id.chars().take(16).collect(),
            })?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed {
                reason: "the data is not base64url",
            })?;
        if body.len() < NONCE + 16 {
            return Err(SealError::Malformed {
                reason: "the data is too short",
            });
        }
        let (nonce, sealed) = body.split_at(NONCE);
        cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Rejected)
    }

    fn is_current(&self, envelope: &str) -> bool {
        Self::split(envelope).is_ok_and(|(key_id, _)| key_id == self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_in_their_context_and_under_held_keys() {
        let (old, new) = (SealingKey::generate(), SealingKey::generate());
        let sealer = AesGcmSealer::new(&old, &[]);
        let envelope = sealer.seal(b"rt-secret", b"row 1").expect("seal");
        assert!(!envelope.contains("rt-secret"));
        assert_ne!(
            envelope,
            sealer.seal(b"rt-secret", b"row 1").expect("seal"),
            "fresh nonce"
        );
        assert_eq!(
            sealer.open(&envelope, b"row 1").expect("open"),
            b"rt-secret"
        );
        assert_eq!(sealer.open(&envelope, b"row 2"), Err(SealError::Rejected));
        let rotated = AesGcmSealer::new(&new, std::slice::from_ref(&old));
        assert!(!rotated.is_current(&envelope));
        assert_eq!(
            rotated.open(&envelope, b"row 1").expect("old key"),
            b"rt-secret"
        );
        let resealed = rotated.seal(b"rt-secret", b"row 1").expect("seal");
        assert!(rotated.is_current(&resealed));
        assert!(matches!(
            sealer.open(&resealed, b"row 1"),
            Err(SealError::UnknownKey { .. })
        ));
        // One character of the ciphertext changed (mid-body: every bit
        // there is data, so the base64 stays valid).
        let mut bytes = resealed.clone().into_bytes();
        let at = bytes.len() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert_eq!(rotated.open(&tampered, b"row 1"), Err(SealError::Rejected));
        for bad in ["{\"a\":1}", "s1..x", "s1.k", "s1.k.!!"] {
            assert!(rotated.open(bad, b"row 1").is_err(), "{bad}");
        }
    }
}
