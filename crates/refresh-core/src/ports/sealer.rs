//! [`Sealer`]: encryption of stored secrets (credentials at rest, answers in
//! generation claims, and later values in a shared token cache), behind one
//! small trait so every backend seals with the same keys.

use std::fmt;

/// Why a value could not be sealed or opened. Never carries the value, the
/// key, or anything derived from either beyond a key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The value is sealed under a key this sealer does not hold.
    #[error("sealed under key {key_id:?}, which is not configured")]
    UnknownKey {
        /// The key id found in the envelope.
        key_id: String,
    },
    /// The envelope is not one this sealer writes.
    #[error("not a sealed envelope: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Authentication failed: a wrong key, a corrupted ciphertext, or a
    /// ciphertext moved to another row (the context does not match).
    #[error("sealed value does not open in this context (wrong key, corrupted, or moved)")]
    Rejected,
    /// Sealing itself failed (the random source).
    #[error("sealing failed: {reason}")]
    Failed {
        /// What failed.
        reason: &'static str,
    },
}

/// Seals and opens values at rest with authenticated encryption.
///
/// # Contract
/// - [`open`](Self::open) of [`seal`](Self::seal)`(v, context)` with the
///   same `context` returns `v`; with any other context it fails with
///   [`SealError::Rejected`] (the context is the associated data that binds
///   a ciphertext to its row).
/// - Every seal uses a fresh random nonce: sealing one value twice gives two
///   different envelopes.
/// - An envelope names its key; a sealer opens envelopes of every key it
///   holds and seals with its current one;
///   [`is_current`](Self::is_current) tells whether an envelope needs
///   re-sealing (key rotation).
/// - Envelopes are printable ASCII; no error or `Debug` output contains the
///   plaintext or a key.
pub trait Sealer: Send + Sync + fmt::Debug {
    /// The id of the key new values are sealed with.
    fn current_key_id(&self) -> &str;

    /// Seals `plaintext` bound to `context`.
    ///
    /// # Errors
    /// [`SealError::Failed`] when no nonce can be drawn.
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, SealError>;

    /// Opens an envelope sealed with `context`.
    ///
    /// # Errors
    /// [`SealError::Malformed`], [`SealError::UnknownKey`] or
    /// [`SealError::Rejected`].
    fn open(&self, envelope: &str, context: &[u8]) -> Result<Vec<u8>, SealError>;

    /// Whether `envelope` is sealed under the current key.
    fn is_current(&self, envelope: &str) -> bool;
}
