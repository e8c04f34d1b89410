//! [`FakeUpstream`] and [`RotatingExecutor`]: an in-process OAuth server that
//! rotates refresh tokens and detects reuse, for flow-level tests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};

use crate::domain::{
    Account, AccountId, Credentials, ExpiryRule, GrantFields, Platform, TokenGrant,
};
use crate::error::{OAuthErrorCode, ProviderError};
use crate::ports::{RefreshContext, RefreshExecutor};

#[derive(Default)]
struct State {
    /// The one refresh token each account may present now.
    current: HashMap<AccountId, String>,
    generation: HashMap<AccountId, u64>,
    successes: u64,
    reuses: u64,
    failures: VecDeque<ProviderError>,
    after_rotation: VecDeque<ProviderError>,
    keeps_refresh_tokens: bool,
}

/// A rotating OAuth server. The first refresh token seen for an account is
/// trusted; each successful refresh issues `rt-<id>-<n>` / `at-<id>-<n>` and
/// invalidates the presented token; presenting any other token counts as a
/// reuse and answers `refresh_token_reused`.
///
/// Rotation happens when a request arrives; the response is then held by
/// the optional gate and latency, modelling a response in flight.
pub struct FakeUpstream {
    state: Mutex<State>,
    calls: watch::Sender<u64>,
    gated: AtomicBool,
    gate: Semaphore,
    latency: Mutex<Duration>,
}

impl Default for FakeUpstream {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            calls: watch::channel(0).0,
            gated: AtomicBool::new(false),
            gate: Semaphore::new(0),
            latency: Mutex::new(Duration::ZERO),
        }
    }
}

impl std::fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("calls", &self.calls())
            .field("successes", &self.successes())
            .field("reuses", &self.reuses())
            .finish()
    }
}

impl FakeUpstream {
    /// A new server.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests received.
    pub fn calls(&self) -> u64 {
        *self.calls.borrow()
    }

    /// Successful rotations.
    pub fn successes(&self) -> u64 {
        self.state().successes
    }

    /// Requests that presented a consumed or unknown refresh token.
    pub fn reuses(&self) -> u64 {
        self.state().reuses
    }

    /// The refresh token the server accepts now for `id`.
    pub fn current_refresh_token(&self, id: AccountId) -> Option<String> {
        self.state().current.get(&id).cloned()
    }

    /// Answers the next request (before rotating) with `error`.
    pub fn fail_next(&self, error: ProviderError) {
        self.state().failures.push_back(error);
    }

    /// Processes the next valid request (the presented token is consumed
    /// and a new one issued, which nobody receives) and answers it with
    /// `error`: a 5xx after the rotation, 2xx garbage, a reset after
    /// sending.
    pub fn fail_after_rotation_next(&self, error: ProviderError) {
        self.state().after_rotation.push_back(error);
    }

    /// Makes the server keep refresh tokens (Google): a refresh issues a new
    /// access token and answers with the presented refresh token, which
    /// stays valid.
    pub fn keep_refresh_tokens(&self) {
        self.state().keeps_refresh_tokens = true;
    }

    /// Whether the server keeps refresh tokens.
    pub fn keeps_refresh_tokens(&self) -> bool {
        self.state().keeps_refresh_tokens
    }

    /// Holds every response until [`release`](Self::release) lets it go.
    pub fn hold_responses(&self) {
        self.gated.store(true, Ordering::SeqCst);
    }

    /// Lets `n` held responses go.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Stops holding responses and lets every waiting one go.
    pub fn open(&self) {
        self.gated.store(false, Ordering::SeqCst);
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Adds latency to every response (measured on tokio time).
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// Resolves once at least `n` requests arrived.
    pub async fn wait_for_calls(&self, n: u64) {
        let mut rx = self.calls.subscribe();
        let _ = rx.wait_for(|calls| *calls >= n).await;
    }

    /// Serves one refresh request; returns `(generation, new refresh token)`.
    ///
    /// # Errors
    /// A scripted failure, or `refresh_token_reused` on reuse.
    pub async fn redeem(
        &self,
        id: AccountId,
        presented: &str,
    ) -> Result<(u64, String), ProviderError> {
        self.calls.send_modify(|c| *c += 1);
        let outcome = {
            let mut state = self.state();
            if let Some(error) = state.failures.pop_front() {
                Err(error)
            } else {
                let current = state
                    .current
                    .entry(id)
                    .or_insert_with(|| presented.to_owned())
                    .clone();
                if current == presented {
                    let generation = state.generation.entry(id).or_default();
                    *generation += 1;
                    let generation = *generation;
                    let next = if state.keeps_refresh_tokens {
                        current
                    } else {
                        format!("rt-{id}-{generation}")
                    };
                    state.current.insert(id, next.clone());
                    match state.after_rotation.pop_front() {
                        Some(error) => Err(error),
                        None => {
                            state.successes += 1;
                            Ok((generation, next))
                        }
                    }
                } else {
                    state.reuses += 1;
                    Err(ProviderError::InvalidGrant {
                        code: OAuthErrorCode::new("refresh_token_reused"),
                        description: None,
                    })
                }
            }
        };
        let latency = *self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.gated.load(Ordering::SeqCst) {
            self.gate
                .acquire()
                .await
                .expect("gate is never closed")
                .forget();
        }
        outcome
    }
}

/// A [`RefreshExecutor`] backed by a [`FakeUpstream`]: issues
/// `at-<id>-<n>` valid for `expires_in` from the flow's clock, presenting
/// exactly the claimed refresh token of the [`RefreshContext`] (a blank one
/// is [`ProviderError::MissingRefreshToken`], nothing sent).
pub struct RotatingExecutor {
    platform: Platform,
    upstream: Arc<FakeUpstream>,
    expires_in: Duration,
}

impl RotatingExecutor {
    /// An executor for `platform` whose tokens live `expires_in`.
    pub fn new(platform: Platform, upstream: Arc<FakeUpstream>, expires_in: Duration) -> Self {
        Self {
            platform,
            upstream,
            expires_in,
        }
    }
}

impl std::fmt::Debug for RotatingExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingExecutor")
            .field("platform", &self.platform)
            .finish()
    }
}

#[async_trait]
impl RefreshExecutor for RotatingExecutor {
    fn platform(&self) -> Platform {
        self.platform.clone()
    }

    fn rotates_refresh_token(&self) -> bool {
        !self.upstream.keeps_refresh_tokens()
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        if ctx.refresh_token.is_blank() {
            return Err(ProviderError::MissingRefreshToken);
        }
        let (generation, refresh_token) = self
            .upstream
            .redeem(account.id, ctx.refresh_token.expose())
            .await?;
        let grant = TokenGrant {
            access_token: Some(format!("at-{}-{generation}", account.id).into()),
            refresh_token: Some(refresh_token.into()),
            token_type: Some("Bearer".into()),
            expires_in: Some(i64::try_from(self.expires_in.as_secs()).unwrap_or(i64::MAX)),
            scope: None,
        };
        let issued = grant.to_credentials(
            ctx.now(),
            ExpiryRule::EXACT,
            GrantFields {
                write_expires_in: false,
                write_type_and_scope: true,
            },
        );
        Ok(issued.merged_over(&account.credentials))
    }
}
