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
    /// Points every provider's URLs at this base (the real paths kept), as
    /// [`with_base_url`](Self::with_base_url) does: for the emulator and
    /// tests. `None` (the default) keeps each provider's URLs.
    pub base_url: Option<String>,
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
    // A section of a provider whose feature is off is accepted and
    // ignored, so one config file serves every build.
    #[cfg(not(feature = "claude"))]
    #[serde(rename = "claude")]
    _claude: Option<serde::de::IgnoredAny>,
    #[cfg(not(feature = "openai"))]
    #[serde(rename = "openai")]
    _openai: Option<serde::de::IgnoredAny>,
    #[cfg(not(feature = "gemini"))]
    #[serde(rename = "gemini")]
    _gemini: Option<serde::de::IgnoredAny>,
    #[cfg(not(feature = "antigravity"))]
    #[serde(rename = "antigravity")]
    _antigravity: Option<serde::de::IgnoredAny>,
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

    /// The configuration as the executors use it: [`base_url`](Self::base_url)
    /// applied.
    pub fn resolved(self) -> Self {
        match self.base_url.clone() {
            Some(base) if !base.trim().is_empty() => self.with_base_url(base.trim()),
            _ => self,
        }
    }

    /// Checks every setting that cannot work before the first refresh:
    /// URLs that are not absolute `http(s)` URLs, timeouts too short to be
    /// answered in or too long, a body cap that could cut a token answer,
    /// header values that are not printable ASCII, a half-configured AI
    /// Studio client, an empty base-URL list, discovery without a reserve.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let config = self.clone().resolved();
        if let Some(base) = &config.base_url {
            crate::validate::url("base_url", base)?;
        }
        config.http.validate()?;
        #[cfg(feature = "claude")]
        config.claude.validate()?;
        #[cfg(feature = "openai")]
        config.openai.validate()?;
        #[cfg(feature = "gemini")]
        config.gemini.validate()?;
        #[cfg(feature = "antigravity")]
        config.antigravity.validate()?;
        Ok(())
    }
}

impl ProvidersConfig {
    /// The `rate_limit` of every enabled provider, by platform, for
    /// [`RefreshFlowBuilder::rate_limit`](refresh_core::RefreshFlowBuilder::rate_limit).
    #[allow(unused_mut, clippy::vec_init_then_push)] // pushes are per feature
    pub fn rate_limits(&self) -> Vec<(refresh_core::Platform, refresh_core::RateLimit)> {
        let mut limits = Vec::new();
        #[cfg(feature = "claude")]
        limits.push((refresh_core::Platform::Anthropic, self.claude.rate_limit));
        #[cfg(feature = "openai")]
        limits.push((refresh_core::Platform::OpenAi, self.openai.rate_limit));
        #[cfg(feature = "gemini")]
        limits.push((refresh_core::Platform::Gemini, self.gemini.rate_limit));
        #[cfg(feature = "antigravity")]
        limits.push((
            refresh_core::Platform::Antigravity,
            self.antigravity.rate_limit,
        ));
        limits
    }
}

/// Registers the executor of every enabled provider in `registry` (an
/// executor already registered for a platform is replaced), sharing one
/// [`HttpClients`] pool, which it returns (to read
/// [`clients_built`](HttpClients::clients_built), or to build more
/// executors on the same pool).
///
/// # Errors
/// As [`ProvidersConfig::validate`]; nothing is registered then.
pub fn register_all(
    registry: &mut ExecutorRegistry,
    config: ProvidersConfig,
) -> Result<HttpClients, ConfigError> {
    config.validate()?;
    let config = config.resolved();
    let http = HttpClients::new(config.http.clone());
    for executor in executors(config, &http) {
        registry.register(executor);
    }
    Ok(http)
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
/// seconds (integer or fractional) or a human string (`"60s"`, `"1m 30s"`,
/// `"500ms"`).
pub(crate) mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(f64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected seconds (a number) or a duration like \"60s\"")
        })? {
            Written::Seconds(secs) => Duration::try_from_secs_f64(secs).map_err(|_| {
                serde::de::Error::custom(format!("{secs} is not a duration in seconds"))
            }),
            Written::Text(text) => humantime::parse_duration(text.trim())
                .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration ({e})"))),
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
    }

    #[cfg(all(feature = "claude", feature = "openai"))]
    #[test]
    fn each_provider_reads_its_rate_limit_and_refuses_a_bad_one() {
        let config: ProvidersConfig =
            serde_json::from_str(r#"{"claude": {"rate_limit": "20/s"}}"#).unwrap();
        let limits = config.rate_limits();
        let of = |p: refresh_core::Platform| limits.iter().find(|(q, _)| *q == p).unwrap().1;
        assert_eq!(of(refresh_core::Platform::Anthropic).to_string(), "20/s");
        assert_eq!(
            of(refresh_core::Platform::OpenAi),
            crate::DEFAULT_RATE_LIMIT
        );
        let bad = serde_json::from_str::<ProvidersConfig>(r#"{"openai": {"rate_limit": "fast"}}"#)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("rate_limit"), "{bad}");
        assert!(
            serde_json::from_str::<ProvidersConfig>(r#"{"openai": {"rate_limt": "1/s"}}"#).is_err()
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
}
