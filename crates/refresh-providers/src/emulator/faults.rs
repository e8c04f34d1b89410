//! Fault injection: one-shot [`Fault`]s and random [`FaultRates`].

use serde::Deserialize;

/// What a fault does to a request (after the request body was read).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// `503` with an HTML page.
    ServerError,
    /// `429` with `Retry-After` (seconds or an HTTP-date, as given).
    RateLimited {
        /// The header value.
        #[serde(default = "default_retry_after")]
        retry_after: String,
    },
    /// Never answer; the connection stays open until the client gives up
    /// or the emulator stops.
    Hang,
    /// Reset the connection (TCP RST) without an answer.
    Reset,
    /// `200` with a body that is cut-off JSON.
    MalformedJson,
    /// `502` with an HTML error page (a proxy's).
    HtmlError,
    /// The endpoint's own answer with `field` removed from its JSON body:
    /// a malformed answer that still carries the rest (e.g. a rotated
    /// `refresh_token` without its `access_token`). Only meaningful with
    /// `processed: true`; unprocessed there is no answer to cut (a `500`).
    DropField {
        /// The top-level JSON field to remove.
        field: String,
    },
    /// `200` with a streamed body of `bytes` bytes (20 MB by default).
    Oversized {
        /// Body size.
        #[serde(default = "default_oversized")]
        bytes: u64,
        /// Whether to announce the size in `Content-Length` (else the body
        /// is chunked and only its streaming shows the size).
        #[serde(default)]
        announce_length: bool,
    },
}

fn default_retry_after() -> String {
    "30".to_owned()
}

fn default_oversized() -> u64 {
    20_000_000
}

/// A one-shot fault for the next request matching `path`. (Unknown JSON
/// fields are ignored: `serde` cannot refuse them through `flatten`.)
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Fault {
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Only requests to this path (e.g. `/token`); any emulated path when
    /// absent.
    #[serde(default)]
    pub path: Option<String>,
    /// Whether the request is processed first (a refresh rotates, an
    /// onboarding advances) and only its answer is replaced: "the upstream
    /// consumed the token but the client never learned".
    #[serde(default)]
    pub processed: bool,
}

impl Fault {
    /// `kind` on the next emulated request, unprocessed.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            path: None,
            processed: false,
        }
    }

    /// Only on requests to `path`.
    pub fn on(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// After processing the request.
    pub fn after_processing(mut self) -> Self {
        self.processed = true;
        self
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.path.as_deref().is_none_or(|p| p == path)
    }
}

/// Probabilities (0–1) of a fault on every emulated request, unprocessed,
/// checked in field order. For benchmarks and the demo; tests use
/// one-shot [`Fault`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRates {
    /// `503` HTML.
    pub server_error: f64,
    /// `429` with `Retry-After: 30`.
    pub rate_limited: f64,
    /// Reset after reading the request.
    pub reset: f64,
    /// `200` with cut-off JSON.
    pub malformed_json: f64,
    /// `502` HTML.
    pub html_error: f64,
}

impl FaultRates {
    /// One draw.
    pub(crate) fn draw(&self) -> Option<FaultKind> {
        let r = fastrand::f64();
        let mut acc = 0.0;
        for (p, kind) in [
            (self.server_error, FaultKind::ServerError),
            (
                self.rate_limited,
                FaultKind::RateLimited {
                    retry_after: default_retry_after(),
                },
            ),
            (self.reset, FaultKind::Reset),
            (self.malformed_json, FaultKind::MalformedJson),
            (self.html_error, FaultKind::HtmlError),
        ] {
            acc += p.clamp(0.0, 1.0);
            if r < acc {
                return Some(kind);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_admin_json() {
        let f: Fault = serde_json::from_str(
            r#"{"kind":"rate_limited","retry_after":"Wed, 21 Oct 2015 07:28:00 GMT","path":"/token"}"#,
        )
        .unwrap();
        assert!(f.matches("/token") && !f.matches("/oauth/token"));
        assert!(!f.processed);
        let f: Fault = serde_json::from_str(r#"{"kind":"oversized"}"#).unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Oversized {
                bytes: 20_000_000,
                announce_length: false
            }
        );
        let f: Fault = serde_json::from_str(
            r#"{"kind":"drop_field","field":"access_token","processed":true}"#,
        )
        .unwrap();
        assert_eq!(
            f.kind,
            FaultKind::DropField {
                field: "access_token".to_owned()
            }
        );
        assert!(f.processed);
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn certain_and_impossible_rates() {
        let always = FaultRates {
            server_error: 1.0,
            ..FaultRates::default()
        };
        assert_eq!(always.draw(), Some(FaultKind::ServerError));
        assert_eq!(FaultRates::default().draw(), None);
    }
}
