//! [`SealingConfig`] and [`Sealing`]: where keys come from, and the explicit
//! plaintext opt-in.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AesGcmSealer, SealingKey};
use refresh_core::{ConfigError, Sealer, Secret};

/// The environment variable holding the current key.
pub const ENV_KEY: &str = "OAUTH_REFRESH_ENCRYPTION_KEY";
/// The environment variable holding previous keys (comma-separated), still
/// opened during a rotation.
pub const ENV_PREVIOUS_KEYS: &str = "OAUTH_REFRESH_PREVIOUS_ENCRYPTION_KEYS";

/// Key configuration (a config file section, or the environment).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SealingConfig {
    /// The current key (base64 or hex of 32 bytes).
    pub encryption_key: Option<Secret>,
    /// Keys values may still be sealed under (rotation): opened, never used
    /// to seal.
    pub previous_encryption_keys: Vec<Secret>,
    /// Store credentials unencrypted. Only with this set and no key.
    pub allow_plaintext: bool,
}

impl fmt::Debug for SealingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingConfig")
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "previous_encryption_keys",
                &self.previous_encryption_keys.len(),
            )
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

impl SealingConfig {
    /// Keys from [`ENV_KEY`] and [`ENV_PREVIOUS_KEYS`]; `allow_plaintext`
    /// stays off.
    pub fn from_env() -> Self {
        let key = std::env::var(ENV_KEY).ok().filter(|k| !k.trim().is_empty());
        let previous = std::env::var(ENV_PREVIOUS_KEYS).unwrap_or_default();
        Self {
            encryption_key: key.map(Secret::from),
            previous_encryption_keys: previous
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(Secret::from)
                .collect(),
            allow_plaintext: false,
        }
    }
}

/// How the backends store secrets: sealed (the default and the only mode
/// without an explicit opt-in) or plaintext.
#[derive(Clone)]
pub enum Sealing {
    /// Every credential map, proxy URL and claim answer is sealed.
    Sealed(Arc<dyn Sealer>),
    /// Stored as plain JSON. Only by [`Sealing::plaintext_opt_in`] or
    /// `allow_plaintext = true`.
    Plaintext,
}

impl fmt::Debug for Sealing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sealed(sealer) => f.debug_tuple("Sealed").field(sealer).finish(),
            Self::Plaintext => f.write_str("Plaintext"),
        }
    }
}

impl Sealing {
    /// Sealed under `current`, opening `previous` too.
    pub fn keys(current: &SealingKey, previous: &[SealingKey]) -> Self {
        Self::Sealed(Arc::new(AesGcmSealer::new(current, previous)))
    }

    /// Sealed by any [`Sealer`] (the same one a Redis token cache uses).
    pub fn sealer(sealer: Arc<dyn Sealer>) -> Self {
        Self::Sealed(sealer)
    }

    /// Plaintext storage, explicitly.
    pub fn plaintext_opt_in() -> Self {
        Self::Plaintext
    }

    /// From configuration: a key seals; no key and `allow_plaintext` is
    /// plaintext; no key otherwise is an error.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting: no key without the
    /// opt-in, a key that does not parse.
    pub fn from_config(config: &SealingConfig) -> Result<Self, ConfigError> {
        let Some(key) = &config.encryption_key else {
            if config.allow_plaintext {
                return Ok(Self::Plaintext);
            }
            return Err(ConfigError::Invalid {
                field: "encryption_key",
                reason: format!(
                    "no key configured: set encryption_key (or {ENV_KEY}), or allow_plaintext = true to store credentials unencrypted"
                ),
            });
        };
        let current = SealingKey::parse("encryption_key", key.expose())?;
        let previous = config
            .previous_encryption_keys
            .iter()
            .map(|k| SealingKey::parse("previous_encryption_keys", k.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::keys(&current, &previous))
    }

    /// The sealer, when sealing.
    pub fn as_sealer(&self) -> Option<&Arc<dyn Sealer>> {
        match self {
            Self::Sealed(sealer) => Some(sealer),
            Self::Plaintext => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_needs_the_opt_in_and_keys_must_parse() {
        let error = Sealing::from_config(&SealingConfig::default()).expect_err("no key");
        assert!(error.to_string().contains("allow_plaintext"));
        let opted = SealingConfig {
            allow_plaintext: true,
            ..SealingConfig::default()
        };
        assert!(matches!(
            Sealing::from_config(&opted),
            Ok(Sealing::Plaintext)
        ));
        let bad = SealingConfig {
            encryption_key: Some(Secret::from("not-a-key")),
            ..SealingConfig::default()
        };
        let error = Sealing::from_config(&bad).expect_err("bad key");
        assert!(!error.to_string().contains("not-a-key"));
        let key = SealingKey::generate();
        let good = SealingConfig {
            encryption_key: Some(Secret::from(key.expose_base64().as_str())),
            ..SealingConfig::default()
        };
        let sealing = Sealing::from_config(&good).expect("a key");
        assert_eq!(
            sealing.as_sealer().expect("sealed").current_key_id(),
            key.id()
        );
        assert!(!format!("{good:?}").contains(key.expose_base64().as_str()));
    }
}
