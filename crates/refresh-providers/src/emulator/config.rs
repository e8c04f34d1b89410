//! [`EmulatorConfig`] and [`Latency`].

use std::time::Duration;

use serde::Deserialize;

/// How the emulator behaves. Client ids and secrets default to the real
/// ones the executors send by default. `Debug` shows client ids, never
/// client secrets.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// Claude's OAuth client id.
    pub claude_client_id: String,
    /// OpenAI's OAuth client ids (the Codex CLI's, plus any an account may
    /// name).
    pub openai_client_ids: Vec<String>,
    /// Google OAuth clients `(id, secret)` accepted at `/token` (Gemini
    /// CLI, Antigravity, and any AI Studio client).
    pub google_clients: Vec<(String, String)>,
    /// Access-token lifetime per provider, seconds: Claude (8 h).
    pub claude_expires_in: i64,
    /// OpenAI access-token lifetime, seconds.
    pub openai_expires_in: i64,
    /// Google access-token lifetime, seconds.
    pub google_expires_in: i64,
    /// Delay of every emulated answer.
    pub latency: Latency,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let google: Vec<&str> = self
            .google_clients
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        f.debug_struct("EmulatorConfig")
            .field("port", &self.port)
            .field("claude_client_id", &self.claude_client_id)
            .field("openai_client_ids", &self.openai_client_ids)
            .field("google_client_ids", &google)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            claude_client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".to_owned(),
            openai_client_ids: vec!["app_EMoamEEZ73f0CkXaXp7hrann".to_owned()],
            google_clients: vec![
                (
                    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
                        .to_owned(),
                    "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".to_owned(),
                ),
                (
                    "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"
                        .to_owned(),
                    "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".to_owned(),
                ),
            ],
            claude_expires_in: 28_800,
            openai_expires_in: 3_600,
            google_expires_in: 3_599,
            latency: Latency::default(),
        }
    }
}

/// A delay before each emulated answer: `fixed` plus a uniform random part
/// in `[0, jitter]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// Fixed part, milliseconds.
    pub fixed_ms: u64,
    /// Upper bound of the random part, milliseconds.
    pub jitter_ms: u64,
}

impl Latency {
    /// A fixed delay.
    pub fn fixed(delay: Duration) -> Self {
        Self {
            fixed_ms: delay.as_millis() as u64,
            jitter_ms: 0,
        }
    }

    /// This answer's delay.
    pub(crate) fn sample(self) -> Duration {
        let jitter = if self.jitter_ms == 0 {
            0
        } else {
            fastrand::u64(0..=self.jitter_ms)
        };
        Duration::from_millis(self.fixed_ms.saturating_add(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_samples_stay_within_fixed_plus_jitter() {
        let latency = Latency {
            fixed_ms: 50,
            jitter_ms: 20,
        };
        for _ in 0..1000 {
            let d = latency.sample().as_millis();
            assert!((50..=70).contains(&d), "{d}");
        }
        assert_eq!(
            Latency::fixed(Duration::from_millis(5)).sample(),
            Duration::from_millis(5)
        );
        assert_eq!(Latency::default().sample(), Duration::ZERO);
    }
}
