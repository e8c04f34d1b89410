//! Grants: what a test seeds ([`GrantSpec`]) and what it reads back
//! ([`GrantStats`]).

use std::fmt;

use refresh_core::Secret;
use serde::{Deserialize, Serialize};

/// The upstream a grant belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmulatedProvider {
    /// Anthropic: JSON token endpoint, rotating refresh tokens.
    #[serde(alias = "anthropic")]
    Claude,
    /// OpenAI: form token endpoint, rotating refresh tokens, nested errors.
    #[serde(rename = "openai")]
    OpenAi,
    /// Gemini: Google's token endpoint, non-rotating.
    Gemini,
    /// Antigravity: Google's token endpoint, non-rotating.
    Antigravity,
}

impl EmulatedProvider {
    /// Whether a refresh replaces the refresh token.
    pub fn rotates(self) -> bool {
        matches!(self, Self::Claude | Self::OpenAi)
    }

    /// Whether the grant is served by Google's endpoints.
    pub fn is_google(self) -> bool {
        matches!(self, Self::Gemini | Self::Antigravity)
    }
}

/// The id of a seeded grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(pub u64);

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Cloud Resource Manager project of a Google grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpProject {
    /// `projectId`.
    pub project_id: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `lifecycleState` (default `ACTIVE`).
    #[serde(default = "active")]
    pub lifecycle_state: String,
}

fn active() -> String {
    "ACTIVE".to_owned()
}

/// A grant to create (`POST /admin/grants` takes it as JSON). `Debug`
/// shows whether a refresh token is set, never the token.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrantSpec {
    /// Which upstream (required in JSON).
    pub provider: Option<EmulatedProvider>,
    /// The first refresh token; a random one when absent.
    pub refresh_token: Option<String>,
    /// The OAuth client the grant was issued to; the provider's default
    /// client when absent. Google refreshes with another client get
    /// `unauthorized_client`.
    pub client_id: Option<String>,
    /// The account's email (OpenAI id_token claim, Claude account).
    pub email: Option<String>,
    /// Google: the project `loadCodeAssist` reports
    /// (`cloudaicompanionProject`); none when absent.
    pub project_id: Option<String>,
    /// Google: `currentTier.id` of `loadCodeAssist`.
    pub current_tier: Option<String>,
    /// Google: `paidTier.id` of `loadCodeAssist`.
    pub paid_tier: Option<String>,
    /// Google: the project `onboardUser` creates once done; none when
    /// absent (onboarding finishes without a project).
    pub onboard_project: Option<String>,
    /// Google: `onboardUser` calls answered `done: false` before it is
    /// done.
    pub onboard_pending_polls: u32,
    /// Google: `onboardUser` returns the project as `{id, name}` rather
    /// than a string.
    pub project_as_object: bool,
    /// Google: the projects `GET /v1/projects` lists.
    pub gcp_projects: Vec<GcpProject>,
    /// Google: the Drive storage limit in bytes; `None` answers Drive with
    /// 403 (the built-in client usually lacks the Drive scope).
    pub drive_limit: Option<i64>,
    /// Google: the Drive storage usage in bytes.
    pub drive_usage: i64,
}

impl fmt::Debug for GrantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSpec")
            .field("provider", &self.provider)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("client_id", &self.client_id)
            .field("email", &self.email)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl GrantSpec {
    /// A grant of `provider` with a random refresh token and defaults.
    pub fn new(provider: EmulatedProvider) -> Self {
        Self {
            provider: Some(provider),
            ..Self::default()
        }
    }

    /// With this first refresh token.
    pub fn refresh_token(mut self, token: impl Into<String>) -> Self {
        self.refresh_token = Some(token.into());
        self
    }
}

/// A created grant: its id and first tokens.
#[derive(Clone)]
pub struct SeededGrant {
    /// The id.
    pub grant_id: GrantId,
    /// The refresh token to store in the account.
    pub refresh_token: Secret,
}

impl fmt::Debug for SeededGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeededGrant")
            .field("grant_id", &self.grant_id)
            .field("refresh_token", &self.refresh_token)
            .finish()
    }
}

/// The counters of one grant. No token values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantStats {
    /// The id.
    pub grant_id: GrantId,
    /// The upstream.
    pub provider: EmulatedProvider,
    /// Successful refreshes.
    pub refreshes: u64,
    /// Presentations of a rotated-out refresh token.
    pub reuse_attempts: u64,
    /// Refused refreshes (reuse, revoked, wrong client).
    pub rejected: u64,
    /// Whether the grant is revoked (every refresh fails).
    pub revoked: bool,
    /// How many refresh tokens the grant has issued (1 + rotations).
    pub generation: u64,
    /// The project id the grant holds now (after onboarding).
    pub project_id: Option<String>,
}
