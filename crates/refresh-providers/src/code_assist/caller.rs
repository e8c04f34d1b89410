//! [`Caller`]: authenticated JSON calls to Code Assist, Resource Manager
//! and Drive, bounded by the follow-up deadline.

use std::time::Duration;

use refresh_core::Secret;
use refresh_core::domain::ProxyUrl;
use serde_json::Value;
use tokio::time::Instant;

use crate::http::{Capped, HttpClients, Outgoing, RequestBody};

/// Why a discovery call failed. Carries no body and no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// No connection or no answer (the transport error's kind).
    Transport(&'static str),
    /// A non-2xx status.
    Status(u16),
    /// A 2xx that is not the expected JSON (or a finished onboarding
    /// without a project).
    Invalid,
    /// `onboardUser` still not `done` after every poll.
    NotDone,
    /// The follow-up budget ran out.
    OutOfTime,
}

impl CallError {
    /// Whether Antigravity moves to the next base URL (§7.2): a connection
    /// error, 408, 404, 429 or 5xx.
    pub(crate) fn tries_next_base(&self) -> bool {
        match self {
            Self::Transport(_) | Self::NotDone => true,
            Self::Status(s) => matches!(s, 404 | 408 | 429) || *s >= 500,
            Self::Invalid | Self::OutOfTime => false,
        }
    }

    /// A short text for logs and the pending marker.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Transport(kind) => format!("transport failure ({kind})"),
            Self::Status(s) => format!("status {s}"),
            Self::Invalid => "unreadable answer or no project".to_owned(),
            Self::NotDone => "onboarding not done after every poll".to_owned(),
            Self::OutOfTime => "out of time before the refresh deadline".to_owned(),
        }
    }
}

/// Calls made with one account's new access token, through its proxy.
pub(crate) struct Caller<'a> {
    pub(crate) http: &'a HttpClients,
    pub(crate) proxy: Option<&'a ProxyUrl>,
    pub(crate) access_token: &'a Secret,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) call_timeout: Duration,
    /// Nothing is sent, and no wait ends, after this instant.
    pub(crate) deadline: Instant,
}

impl Caller<'_> {
    /// `POST url` with a JSON `body`; the JSON answer.
    pub(crate) async fn post(&self, url: &str, body: &Value) -> Result<Value, CallError> {
        let body = RequestBody::Json(body.to_string().into_bytes());
        self.call(Outgoing::post(url, body, self.call_timeout))
            .await
    }

    /// `GET url`; the JSON answer.
    pub(crate) async fn get(&self, url: &str) -> Result<Value, CallError> {
        self.call(Outgoing::get(url, self.call_timeout)).await
    }

    async fn call(&self, request: Outgoing<'_>) -> Result<Value, CallError> {
        if self.time_left().is_zero() {
            return Err(CallError::OutOfTime);
        }
        let request = request
            .header(
                "authorization",
                format!("Bearer {}", self.access_token.expose()),
            )
            .header_opt("user-agent", self.user_agent)
            .via(self.proxy);
        let response = self
            .http
            .send(request, self.deadline)
            .await
            .map_err(|e| CallError::Transport(e.kind_name()))?;
        if !response.is_success() {
            return Err(CallError::Status(response.status));
        }
        match &response.body {
            Capped::Complete(body) => serde_json::from_slice(body).map_err(|_| CallError::Invalid),
            Capped::TooLarge => Err(CallError::Invalid),
        }
    }

    /// Time left before the deadline.
    pub(crate) fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Waits `wait`, or fails when that would pass the deadline.
    pub(crate) async fn pause(&self, wait: Duration) -> Result<(), CallError> {
        if wait >= self.time_left() {
            return Err(CallError::OutOfTime);
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}
