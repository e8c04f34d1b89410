//! [`ProvidersConfig`]: the configuration of every built-in provider, and
//! [`register_all`].

use std::sync::Arc;

use refresh_core::{ConfigError, ExecutorRegistry, RefreshExecutor};
use serde::Deserialize;

use crate::http::{HttpClients, HttpConfig};

/// Every provider's settings plus the shared HTTP layer's.
/// `serde::Deserialize` with every field defaulted to the real upstreams.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// The shared HTTP layer.
    pub http: HttpConfig,
    /// Anthropic (Claude).
    #[cfg(feature = "claude")]
    pub claude: crate::claude::ClaudeConfig,
    /// OpenAI.
    #[cfg(feature = "openai")]
    pub openai: crate::openai::OpenAiConfig,
    /// Gemini.
    #[cfg(feature = "gemini")]
    pub gemini: crate::gemini::GeminiConfig,
    /// Antigravity.
    #[cfg(feature = "antigravity")]
    pub antigravity: crate::antigravity::AntigravityConfig,
}

impl ProvidersConfig {
    /// Points every upstream URL of every provider at `base` (e.g. the
    /// emulator's `http://127.0.0.1:<port>`), keeping the other settings.
    /// The paths are the real ones, which the emulator serves.
    pub fn with_base_url(mut self, base: &str) -> Self {
        #[cfg(feature = "claude")]
        {
            self.claude = self.claude.with_base_url(base);
        }
        #[cfg(feature = "openai")]
        {
            self.openai = self.openai.with_base_url(base);
        }
        #[cfg(feature = "gemini")]
        {
            self.gemini = self.gemini.with_base_url(base);
        }
        #[cfg(feature = "antigravity")]
        {
            self.antigravity = self.antigravity.with_base_url(base);
        }
        let _ = base; // with no provider feature enabled
        self
    }

    /// Checks settings that cannot work (a half-configured AI Studio
    /// client, an empty URL list).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        #[cfg(feature = "gemini")]
        self.gemini.validate()?;
        #[cfg(feature = "antigravity")]
        self.antigravity.validate()?;
        Ok(())
    }
}

/// Registers the executor of every enabled provider in `registry`, sharing
/// one [`HttpClients`] pool.
///
/// # Errors
/// As [`ProvidersConfig::validate`]; nothing is registered then.
pub fn register_all(
    registry: &mut ExecutorRegistry,
    config: ProvidersConfig,
) -> Result<(), ConfigError> {
    config.validate()?;
    let http = HttpClients::new(config.http.clone());
    for executor in executors(config, &http) {
        registry.register(executor);
    }
    Ok(())
}

/// The executors of every enabled provider over `http`.
#[allow(unused_variables, unused_mut, clippy::vec_init_then_push)] // pushes are per feature
fn executors(config: ProvidersConfig, http: &HttpClients) -> Vec<Arc<dyn RefreshExecutor>> {
    let mut all: Vec<Arc<dyn RefreshExecutor>> = Vec::new();
    #[cfg(feature = "claude")]
    all.push(crate::claude::executor(config.claude, http.clone()));
    #[cfg(feature = "openai")]
    all.push(crate::openai::executor(config.openai, http.clone()));
    #[cfg(feature = "gemini")]
    all.push(crate::gemini::executor(config.gemini, http.clone()));
    #[cfg(feature = "antigravity")]
    all.push(crate::antigravity::executor(
        config.antigravity,
        http.clone(),
    ));
    all
}

/// `serde` helpers for durations in configuration files: a number of
/// seconds (integer or fractional) or a human form (`"60s"`, `"5m"`,
/// `"1h 30m"`).
pub(crate) mod duration_secs {
    use std::fmt;
    use std::time::Duration;

    use serde::Deserializer;
    use serde::de::{self, Visitor};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Secs)
    }

    struct Secs;

    impl Visitor<'_> for Secs {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of seconds or a duration such as \"60s\" or \"5m\"")
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(secs).map_err(E::custom)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(|e| {
                E::custom(format!(
                    "expected a number of seconds or a duration such as \"60s\" ({e})"
                ))
            })
        }
    }
}

/// Joins `base` (no trailing slash needed) and `path`.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deserialize_from_an_empty_document_and_unknown_keys_are_refused() {
        let config: ProvidersConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.http, HttpConfig::default());
        assert!(serde_json::from_str::<ProvidersConfig>(r#"{"htp":{}}"#).is_err());
        let http: HttpConfig =
            serde_json::from_str(r#"{"connect_timeout": 2.5, "max_body_bytes": 4096}"#).unwrap();
        assert_eq!(http.connect_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(http.max_body_bytes, 4096);
        assert!(serde_json::from_str::<HttpConfig>(r#"{"connect_timeout": -1}"#).is_err());
        let http: HttpConfig =
            serde_json::from_str(r#"{"connect_timeout": "1m 30s", "client_idle_timeout": 7}"#)
                .unwrap();
        assert_eq!(http.connect_timeout, std::time::Duration::from_secs(90));
        assert!(serde_json::from_str::<HttpConfig>(r#"{"connect_timeout": "soon"}"#).is_err());
    }

    #[cfg(all(feature = "gemini", feature = "antigravity"))]
    #[test]
    fn the_operator_keys_for_code_assist_urls_are_read() {
        let config: ProvidersConfig = serde_json::from_str(
            r#"{"gemini": {"code_assist_url": "http://g"}, "antigravity": {"code_assist_urls": ["http://a", "http://b"]}}"#,
        )
        .unwrap();
        assert_eq!(config.gemini.code_assist_base_url, "http://g");
        assert_eq!(
            config.antigravity.code_assist_base_urls,
            ["http://a", "http://b"]
        );
    }

    #[test]
    fn register_all_registers_every_enabled_platform() {
        let mut registry = ExecutorRegistry::new();
        register_all(&mut registry, ProvidersConfig::default()).unwrap();
        let mut platforms: Vec<_> = registry
            .platforms()
            .map(|p| p.as_str().to_owned())
            .collect();
        platforms.sort();
        assert_eq!(platforms, ["anthropic", "antigravity", "gemini", "openai"]);
        assert_eq!(
            registry.max_min_window(),
            std::time::Duration::from_secs(15 * 60),
            "Antigravity's 15 min minimum window"
        );
    }
}
