//! The emulator's shared state: grants, token indices, counters, faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use refresh_core::Secret;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::config::{EmulatorConfig, Latency};
use super::faults::{Fault, FaultRates};
use super::grant::{EmulatedProvider, GcpProject, GrantId, GrantSpec, GrantStats, SeededGrant};
use super::issue;
use super::login::LoginState;

/// One grant's state.
pub(crate) struct Grant {
    pub(crate) id: GrantId,
    pub(crate) provider: EmulatedProvider,
    pub(crate) client_id: String,
    pub(crate) current_refresh: String,
    pub(crate) generation: u64,
    pub(crate) revoked: bool,
    pub(crate) refreshes: u64,
    pub(crate) reuse_attempts: u64,
    pub(crate) rejected: u64,
    pub(crate) email: String,
    /// The upstream user (one per email): the ids a provider names its
    /// user by (Claude's account and organization uuids, OpenAI's account,
    /// user and organization ids) derive from it, not from the grant, so a
    /// second login as the same user is the same identity.
    pub(crate) user: u64,
    pub(crate) project_id: Option<String>,
    pub(crate) current_tier: Option<String>,
    pub(crate) paid_tier: Option<String>,
    pub(crate) onboard_project: Option<String>,
    pub(crate) onboard_pending_polls: u32,
    pub(crate) onboard_calls: u32,
    pub(crate) project_as_object: bool,
    pub(crate) gcp_projects: Vec<GcpProject>,
    pub(crate) drive_limit: Option<i64>,
    pub(crate) drive_usage: i64,
}

impl Grant {
    fn stats(&self) -> GrantStats {
        GrantStats {
            grant_id: self.id,
            provider: self.provider,
            refreshes: self.refreshes,
            reuse_attempts: self.reuse_attempts,
            rejected: self.rejected,
            revoked: self.revoked,
            generation: self.generation,
            project_id: self.project_id.clone(),
        }
    }
}

/// Which token endpoint a refresh came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Claude,
    OpenAi,
    Google,
}

impl Endpoint {
    fn serves(self, provider: EmulatedProvider) -> bool {
        match self {
            Self::Claude => provider == EmulatedProvider::Claude,
            Self::OpenAi => provider == EmulatedProvider::OpenAi,
            Self::Google => provider.is_google(),
        }
    }
}

/// Tokens issued for a grant, by a refresh or a code exchange.
pub(crate) struct Issued {
    pub(crate) access_token: String,
    /// `None` when the provider does not rotate (or the exchange asked for
    /// no offline access).
    pub(crate) refresh_token: Option<String>,
    pub(crate) expires_in: i64,
    pub(crate) email: String,
    /// The grant's upstream user (see [`Grant::user`]).
    pub(crate) user: u64,
    pub(crate) grant: GrantId,
}

/// What a refresh did.
pub(crate) enum Refreshed {
    /// New tokens.
    Issued(Issued),
    /// A token the emulator never issued (or of another provider).
    Unknown,
    /// The grant is revoked.
    Revoked,
    /// A rotated-out token: the grant is now revoked.
    Reused,
    /// The grant belongs to another OAuth client.
    WrongClient,
}

/// Every counter, as `GET /admin/stats` returns it. No token values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Requests per emulated path (admin calls are not counted).
    pub requests_by_path: BTreeMap<String, u64>,
    /// Successful refreshes, all grants.
    pub refreshes: u64,
    /// Reuse attempts, all grants.
    pub reuse_attempts: u64,
    /// Revoked grants.
    pub revoked_grants: Vec<GrantId>,
    /// Every grant's counters, by id.
    pub grants: Vec<GrantStats>,
    /// Faults applied.
    pub faults_injected: u64,
    /// Bytes of oversized bodies handed to the connection.
    pub oversized_bytes_sent: u64,
    /// Oversized bodies that ended (finished or dropped by the client).
    pub oversized_bodies_ended: u64,
}

impl Stats {
    /// Requests to `path`.
    pub fn requests(&self, path: &str) -> u64 {
        self.requests_by_path.get(path).copied().unwrap_or(0)
    }
}

struct State {
    next_id: u64,
    grants: BTreeMap<GrantId, Grant>,
    /// Email → upstream user number, numbered from 1 in order of first
    /// appearance.
    users: HashMap<String, u64>,
    /// Every refresh token ever issued → its grant.
    refresh_index: HashMap<String, GrantId>,
    /// Every access token issued → its grant.
    access_index: HashMap<String, GrantId>,
    requests_by_path: BTreeMap<String, u64>,
    faults: VecDeque<Fault>,
    rates: FaultRates,
    latency: Latency,
    lifetime_override: Option<i64>,
    faults_injected: u64,
    oversized_bytes_sent: u64,
    oversized_bodies_ended: u64,
}

/// The state shared by every handler.
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    /// Authorization codes, login profiles and counters, the journal.
    pub(crate) login: LoginState,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig) -> Self {
        let latency = config.latency;
        Self {
            config,
            login: LoginState::default(),
            state: Mutex::new(State {
                next_id: 1,
                grants: BTreeMap::new(),
                users: HashMap::new(),
                refresh_index: HashMap::new(),
                access_index: HashMap::new(),
                requests_by_path: BTreeMap::new(),
                faults: VecDeque::new(),
                rates: FaultRates::default(),
                latency,
                lifetime_override: None,
                faults_injected: 0,
                oversized_bytes_sent: 0,
                oversized_bodies_ended: 0,
            }),
            changed: watch::channel(0).0,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state, then wakes [`wait_until`](Self::wait_until)
    /// callers.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        out
    }

    pub(crate) fn seed(&self, spec: GrantSpec) -> Result<SeededGrant, &'static str> {
        let provider = spec.provider.ok_or("provider is required")?;
        let refresh_token = spec
            .refresh_token
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| issue::token(refresh_prefix(provider)));
        let client_id = spec
            .client_id
            .unwrap_or_else(|| self.default_client(provider));
        self.update(|s| {
            if s.refresh_index.contains_key(&refresh_token) {
                return Err("refresh_token is already seeded");
            }
            let id = GrantId(s.next_id);
            s.next_id += 1;
            s.refresh_index.insert(refresh_token.clone(), id);
            let email = spec
                .email
                .unwrap_or_else(|| format!("user{}@example.com", id.0));
            let next_user = s.users.len() as u64 + 1;
            let user = *s.users.entry(email.clone()).or_insert(next_user);
            s.grants.insert(
                id,
                Grant {
                    id,
                    provider,
                    client_id,
                    current_refresh: refresh_token.clone(),
                    generation: 1,
                    revoked: false,
                    refreshes: 0,
                    reuse_attempts: 0,
                    rejected: 0,
                    email,
                    user,
                    project_id: spec.project_id,
                    current_tier: spec.current_tier,
                    paid_tier: spec.paid_tier,
                    onboard_project: spec.onboard_project,
                    onboard_pending_polls: spec.onboard_pending_polls,
                    onboard_calls: 0,
                    project_as_object: spec.project_as_object,
                    gcp_projects: spec.gcp_projects,
                    drive_limit: spec.drive_limit,
                    drive_usage: spec.drive_usage,
                },
            );
            Ok(SeededGrant {
                grant_id: id,
                refresh_token: Secret::from(refresh_token),
            })
        })
    }

    fn default_client(&self, provider: EmulatedProvider) -> String {
        let google = |i: usize| {
            self.config
                .google_clients
                .get(i)
                .map(|c| c.0.clone())
                .unwrap_or_default()
        };
        match provider {
            EmulatedProvider::Claude => self.config.claude_client_id.clone(),
            EmulatedProvider::OpenAi => self
                .config
                .openai_client_ids
                .first()
                .cloned()
                .unwrap_or_default(),
            EmulatedProvider::Gemini => google(0),
            EmulatedProvider::Antigravity => google(1),
        }
    }

    fn lifetime(&self, s: &State, provider: EmulatedProvider) -> i64 {
        s.lifetime_override.unwrap_or(match provider {
            EmulatedProvider::Claude => self.config.claude_expires_in,
            EmulatedProvider::OpenAi => self.config.openai_expires_in,
            _ => self.config.google_expires_in,
        })
    }

    /// Presents `token` with `client_id` at `endpoint`: rotation, reuse
    /// detection (revoking the grant), revocation, client check.
    pub(crate) fn refresh(&self, endpoint: Endpoint, token: &str, client_id: &str) -> Refreshed {
        self.update(|s| {
            let Some(id) = s.refresh_index.get(token).copied() else {
                return Refreshed::Unknown;
            };
            let lifetime = self.lifetime(s, s.grants[&id].provider);
            let Some(grant) = s.grants.get_mut(&id) else {
                return Refreshed::Unknown;
            };
            if !endpoint.serves(grant.provider) {
                return Refreshed::Unknown;
            }
            if grant.client_id != client_id {
                grant.rejected += 1;
                return Refreshed::WrongClient;
            }
            // Every presentation of a rotated-out token is a reuse attempt,
            // before and after the revocation it caused.
            if grant.current_refresh != token {
                grant.reuse_attempts += 1;
                grant.rejected += 1;
                grant.revoked = true;
                return Refreshed::Reused;
            }
            if grant.revoked {
                grant.rejected += 1;
                return Refreshed::Revoked;
            }
            grant.refreshes += 1;
            let access_token = issue::token(access_prefix(grant.provider));
            let refresh_token = grant.provider.rotates().then(|| {
                let next = issue::token(refresh_prefix(grant.provider));
                grant.current_refresh = next.clone();
                grant.generation += 1;
                next
            });
            let (email, user) = (grant.email.clone(), grant.user);
            s.access_index.insert(access_token.clone(), id);
            if let Some(next) = &refresh_token {
                s.refresh_index.insert(next.clone(), id);
            }
            Refreshed::Issued(Issued {
                access_token,
                refresh_token,
                expires_in: lifetime,
                email,
                user,
                grant: id,
            })
        })
    }

    /// Creates a grant for an authorization-code exchange and issues its
    /// first access token (not counted as a refresh), with the grant's
    /// first refresh token.
    pub(crate) fn seed_issued(&self, spec: GrantSpec) -> Result<Issued, &'static str> {
        let seeded = self.seed(spec)?;
        let id = seeded.grant_id;
        Ok(self.update(|s| {
            let (provider, email, user) = {
                let g = &s.grants[&id];
                (g.provider, g.email.clone(), g.user)
            };
            let access_token = issue::token(access_prefix(provider));
            s.access_index.insert(access_token.clone(), id);
            Issued {
                access_token,
                refresh_token: Some(seeded.refresh_token.expose().to_owned()),
                expires_in: self.lifetime(s, provider),
                email,
                user,
                grant: id,
            }
        }))
    }

    /// The email of a grant.
    pub(crate) fn email_of(&self, id: GrantId) -> Option<String> {
        self.state().grants.get(&id).map(|g| g.email.clone())
    }

    /// The Google grant of a Bearer access token.
    pub(crate) fn google_grant(&self, access_token: &str) -> Option<GrantId> {
        let s = self.state();
        let id = *s.access_index.get(access_token)?;
        let grant = s.grants.get(&id)?;
        (grant.provider.is_google() && !grant.revoked).then_some(id)
    }

    /// The `loadCodeAssist` answer of a grant.
    pub(crate) fn load_code_assist(&self, id: GrantId) -> Value {
        let s = self.state();
        let Some(g) = s.grants.get(&id) else {
            return json!({});
        };
        let mut answer = json!({
            "allowedTiers": [
                {"id": "free-tier", "name": "Gemini Code Assist for individuals", "isDefault": true},
                {"id": "standard-tier", "name": "Gemini Code Assist"}
            ]
        });
        if let Some(tier) = &g.current_tier {
            answer["currentTier"] = json!({"id": tier, "name": tier});
        }
        if let Some(tier) = &g.paid_tier {
            answer["paidTier"] = json!({"id": tier, "name": tier});
        }
        if let Some(project) = &g.project_id {
            answer["cloudaicompanionProject"] = json!(project);
        }
        answer
    }

    /// One `onboardUser` call: `done: false` for the configured number of
    /// polls, then done (with the onboarding project, which the grant then
    /// holds).
    pub(crate) fn onboard(&self, id: GrantId) -> Value {
        self.update(|s| {
            let Some(g) = s.grants.get_mut(&id) else {
                return json!({});
            };
            g.onboard_calls += 1;
            if g.onboard_calls <= g.onboard_pending_polls {
                return json!({"name": format!("operations/onboard-{id}"), "done": false});
            }
            let Some(project) = g.onboard_project.clone() else {
                return json!({"name": format!("operations/onboard-{id}"), "done": true, "response": {}});
            };
            g.project_id = Some(project.clone());
            let project = if g.project_as_object {
                json!({"id": project, "name": project})
            } else {
                json!(project)
            };
            json!({
                "name": format!("operations/onboard-{id}"),
                "done": true,
                "response": {"@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse", "cloudaicompanionProject": project}
            })
        })
    }

    /// The Resource Manager projects of a grant.
    pub(crate) fn projects(&self, id: GrantId) -> Value {
        let s = self.state();
        let projects: Vec<Value> = s
            .grants
            .get(&id)
            .map(|g| g.gcp_projects.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|p| {
                json!({"projectId": p.project_id, "name": p.name, "lifecycleState": p.lifecycle_state})
            })
            .collect();
        json!({ "projects": projects })
    }

    /// The Drive quota of a grant; `None` when it has no Drive access.
    pub(crate) fn drive(&self, id: GrantId) -> Option<Value> {
        let s = self.state();
        let g = s.grants.get(&id)?;
        let limit = g.drive_limit?;
        Some(json!({"storageQuota": {
            "limit": limit.to_string(),
            "usage": g.drive_usage.to_string(),
            "usageInDrive": g.drive_usage.to_string(),
        }}))
    }

    pub(crate) fn count_request(&self, path: &str) {
        self.update(|s| *s.requests_by_path.entry(path.to_owned()).or_default() += 1);
    }

    /// The fault of this request: the first queued one matching `path`,
    /// else a random draw from the rates.
    pub(crate) fn take_fault(&self, path: &str) -> Option<Fault> {
        self.update(|s| {
            let fault = match s.faults.iter().position(|f| f.matches(path)) {
                Some(i) => s.faults.remove(i),
                None => s.rates.draw().map(Fault::new),
            };
            if fault.is_some() {
                s.faults_injected += 1;
            }
            fault
        })
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        self.update(|s| s.faults.push_back(fault));
    }

    pub(crate) fn set_rates(&self, rates: FaultRates) {
        self.update(|s| s.rates = rates);
    }

    pub(crate) fn clear_faults(&self) {
        self.update(|s| {
            s.faults.clear();
            s.rates = FaultRates::default();
        });
    }

    pub(crate) fn latency(&self) -> Latency {
        self.state().latency
    }

    pub(crate) fn set_latency(&self, latency: Latency) {
        self.update(|s| s.latency = latency);
    }

    pub(crate) fn set_lifetime(&self, expires_in: Option<i64>) {
        self.update(|s| s.lifetime_override = expires_in);
    }

    pub(crate) fn revoke(&self, id: GrantId) -> bool {
        self.update(|s| s.grants.get_mut(&id).map(|g| g.revoked = true).is_some())
    }

    pub(crate) fn oversized_sent(&self, bytes: u64) {
        self.update(|s| s.oversized_bytes_sent += bytes);
    }

    pub(crate) fn oversized_ended(&self) {
        self.update(|s| s.oversized_bodies_ended += 1);
    }

    pub(crate) fn issued_tokens(&self) -> Vec<Secret> {
        let s = self.state();
        s.refresh_index
            .keys()
            .chain(s.access_index.keys())
            .map(|t| Secret::from(t.as_str()))
            .collect()
    }

    pub(crate) fn current_refresh_token(&self, id: GrantId) -> Option<Secret> {
        let s = self.state();
        s.grants
            .get(&id)
            .map(|g| Secret::from(g.current_refresh.as_str()))
    }

    pub(crate) fn grant(&self, id: GrantId) -> Option<GrantStats> {
        self.state().grants.get(&id).map(Grant::stats)
    }

    pub(crate) fn stats(&self) -> Stats {
        let s = self.state();
        let grants: Vec<GrantStats> = s.grants.values().map(Grant::stats).collect();
        Stats {
            requests_by_path: s.requests_by_path.clone(),
            refreshes: grants.iter().map(|g| g.refreshes).sum(),
            reuse_attempts: grants.iter().map(|g| g.reuse_attempts).sum(),
            revoked_grants: grants
                .iter()
                .filter(|g| g.revoked)
                .map(|g| g.grant_id)
                .collect(),
            grants,
            faults_injected: s.faults_injected,
            oversized_bytes_sent: s.oversized_bytes_sent,
            oversized_bodies_ended: s.oversized_bodies_ended,
        }
    }

    /// Resolves once `done(stats)` holds.
    pub(crate) async fn wait_until(&self, done: impl Fn(&Stats) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if done(&self.stats()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

fn refresh_prefix(provider: EmulatedProvider) -> &'static str {
    match provider {
        EmulatedProvider::Claude => "sk-ant-ort01-",
        EmulatedProvider::OpenAi => "rt_",
        _ => "1//0g",
    }
}

fn access_prefix(provider: EmulatedProvider) -> &'static str {
    match provider {
        EmulatedProvider::Claude => "sk-ant-oat01-",
        EmulatedProvider::OpenAi => "eyJ",
        _ => "ya29.",
    }
}
