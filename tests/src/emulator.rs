//! [`EmulatorProcess`]: the `oauth-emulator` binary as its own process,
//! driven over its admin API.

use std::path::Path;
use std::time::Duration;

use refresh_facade::providers::emulator::{GrantId, GrantStats, Stats};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::bins;
use crate::poll::eventually;
use crate::process::Proc;

/// A running emulator and an admin client for it.
#[derive(Debug)]
pub struct EmulatorProcess {
    /// The process.
    pub proc: Proc,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    client: reqwest::Client,
}

/// A grant seeded at the emulator.
#[derive(Clone)]
pub struct Seeded {
    /// Its id.
    pub grant_id: GrantId,
    /// Its first refresh token.
    pub refresh_token: String,
}

impl std::fmt::Debug for Seeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeded")
            .field("grant_id", &self.grant_id)
            .finish_non_exhaustive()
    }
}

impl EmulatorProcess {
    /// Starts `oauth-emulator --port 0` with its output in `dir` and waits
    /// for the URL it prints.
    pub async fn start(dir: &Path) -> Self {
        let mut cmd = Command::new(bins::path("oauth-emulator"));
        cmd.args(["--port", "0"]);
        let proc = Proc::spawn("emulator", dir, cmd);
        let mut url = String::new();
        eventually(
            "the emulator prints its URL",
            Duration::from_secs(30),
            || {
                let line = proc.logs().lines().next().map(str::to_owned);
                if let Some(line) = line.filter(|l| l.starts_with("http://")) {
                    url = line.trim().to_owned();
                }
                std::future::ready(!url.is_empty())
            },
        )
        .await;
        Self {
            proc,
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let response = request.send().await.expect("emulator admin request");
        assert!(
            response.status().is_success(),
            "emulator admin answered {}",
            response.status()
        );
        response
    }

    /// `POST /admin/grants` for `provider` (`claude`, `openai`).
    pub async fn seed(&self, provider: &str) -> Seeded {
        let body: Value = self
            .send(
                self.client
                    .post(format!("{}/admin/grants", self.url))
                    .json(&json!({ "provider": provider })),
            )
            .await
            .json()
            .await
            .expect("json");
        Seeded {
            grant_id: GrantId(body["grant_id"].as_u64().expect("grant_id")),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }

    /// `GET /admin/stats`.
    pub async fn stats(&self) -> Stats {
        self.send(self.client.get(format!("{}/admin/stats", self.url)))
            .await
            .json()
            .await
            .expect("stats json")
    }

    /// `GET /admin/grants/{id}`.
    pub async fn grant(&self, id: GrantId) -> GrantStats {
        self.send(self.client.get(format!("{}/admin/grants/{id}", self.url)))
            .await
            .json()
            .await
            .expect("grant json")
    }

    /// `GET /admin/grants/{id}/refresh-token`: the grant's current refresh
    /// token.
    pub async fn current_refresh_token(&self, id: GrantId) -> String {
        let body: Value = self
            .send(
                self.client
                    .get(format!("{}/admin/grants/{id}/refresh-token", self.url)),
            )
            .await
            .json()
            .await
            .expect("json");
        body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned()
    }

    /// `GET /admin/issued-tokens`: every token the emulator issued.
    pub async fn issued_tokens(&self) -> Vec<String> {
        let body: Value = self
            .send(self.client.get(format!("{}/admin/issued-tokens", self.url)))
            .await
            .json()
            .await
            .expect("json");
        body["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    }

    /// `POST /admin/grants/{id}/revoke`.
    pub async fn revoke(&self, id: GrantId) {
        self.send(
            self.client
                .post(format!("{}/admin/grants/{id}/revoke", self.url)),
        )
        .await;
    }

    /// `PUT /admin/latency` (fixed milliseconds).
    pub async fn set_latency(&self, fixed_ms: u64) {
        self.send(
            self.client
                .put(format!("{}/admin/latency", self.url))
                .json(&json!({ "fixed_ms": fixed_ms })),
        )
        .await;
    }

    /// `PUT /admin/token-lifetime`.
    pub async fn set_token_lifetime(&self, expires_in: Option<i64>) {
        self.send(
            self.client
                .put(format!("{}/admin/token-lifetime", self.url))
                .json(&json!({ "expires_in": expires_in })),
        )
        .await;
    }

    /// `POST /admin/faults`: a one-shot fault (the admin JSON, e.g.
    /// `{"kind": "hang", "path": "/v1/oauth/token", "processed": true}`).
    pub async fn fault(&self, fault: Value) {
        self.send(
            self.client
                .post(format!("{}/admin/faults", self.url))
                .json(&fault),
        )
        .await;
    }

    /// Requests the emulator received on `path` (`/v1/oauth/token` for
    /// Claude, `/oauth/token` for OpenAI).
    pub async fn requests(&self, path: &str) -> u64 {
        self.stats().await.requests(path)
    }

    /// Waits (90 s at most) until the emulator counted at least `at_least`
    /// successful refreshes; returns the count then.
    pub async fn wait_for_refreshes(&self, at_least: u64, what: &str) -> u64 {
        eventually(what, Duration::from_secs(45), || async {
            self.stats().await.refreshes >= at_least
        })
        .await;
        self.stats().await.refreshes
    }
}
