//! Account onboarding over a [`RefreshStack`]: an OAuth login (REFERENCE.md
//! §13) that creates an account or re-authorizes one, logins parked in the
//! database so any process completes them, and imports of the official
//! CLIs' credential files.
//!
//! - [`begin`] starts a login with the platform's
//!   [`LoginFlow`](refresh_providers::login::LoginFlow); [`park`] stores
//!   the session (sealed; it holds the PKCE verifier and the state) and
//!   [`take`] gets it back, once.
//! - [`complete_new`] exchanges the pasted code and stores the new
//!   account (through [`RefreshStack::import`]: its refresh token is
//!   checked against the generation claims first); [`complete_relogin`]
//!   replaces an existing account's credentials through
//!   [`AccountCatalog::replace_credentials`](refresh_core::AccountCatalog::replace_credentials),
//!   which bumps the version so an in-flight refresh's fenced write loses;
//!   a login as another upstream identity than the account's is refused
//!   ([`OnboardingError::IdentityChanged`]) unless explicitly allowed.
//! - [`store_outcome`] stores any [`LoginOutcome`] (an `import-cli` file).
//!
//! **Stored session format.** The session type lives in
//! `refresh-providers` (it knows each provider's redirect, scope and
//! options); core's [`LoginSessionStore`](refresh_core::LoginSessionStore)
//! keeps it as an opaque [`PendingLogin`] payload: the session's own serde
//! JSON. Core stays free of OAuth details, and the store seals the payload
//! like credentials.
//!
//! Nothing here logs or returns a code, verifier, state or token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refresh_core::ports::MAX_NAME_CHARS;
use refresh_core::{
    Account, AccountId, AccountStatus, Credentials, LoginTake, MetadataUpdate, NewAccount,
    PendingLogin, Platform, StorageError, StorageErrorKind,
};
use refresh_providers::login::{LoginError, LoginOptions, LoginOutcome, LoginSession};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::{ImportRefused, RefreshStack};

/// Why a login could not begin, be found, or be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnboardingError {
    /// No login flow for this platform in this build.
    #[error("no OAuth login for platform {platform}")]
    Unsupported {
        /// The platform.
        platform: Platform,
    },
    /// The login itself failed (bad paste, state mismatch, exchange
    /// refused, ...); see [`LoginError`].
    #[error(transparent)]
    Login(#[from] LoginError),
    /// No such login session: never begun, already completed (a session
    /// is single-use), or purged.
    #[error("the login session is unknown or was already used; start a new login")]
    SessionGone,
    /// The login session is past its expiry.
    #[error("the login session expired; start a new login")]
    SessionExpired,
    /// The stored session does not read back (a key no longer configured,
    /// a session written by an incompatible release).
    #[error("the stored login session cannot be read ({reason}); start a new login")]
    CorruptSession {
        /// Why (no session content).
        reason: String,
    },
    /// The parked session was begun for another purpose (a new account,
    /// or the relogin of another account) than the one completing it; it
    /// is used up, nothing was sent or stored.
    #[error("the login session was begun for {begun}, not for {asked}; start a new login")]
    SessionMismatch {
        /// What the session was begun for.
        begun: LoginPurpose,
        /// What tried to complete it.
        asked: LoginPurpose,
    },
    /// The login is for another platform than the account re-logged in.
    #[error("account {id} is a {account} account; the login was for {login}")]
    WrongPlatform {
        /// The account.
        id: AccountId,
        /// Its platform.
        account: Platform,
        /// The login's platform.
        login: Platform,
    },
    /// The relogin authorized another upstream identity (email, account
    /// or organization id) than the account's; nothing was replaced.
    #[error(
        "the login is for another upstream identity than account {id} ({fields} differ); \
         its credentials were not replaced"
    )]
    IdentityChanged {
        /// The account.
        id: AccountId,
        /// The identity fields that differ (names only, never values).
        fields: String,
    },
    /// The account to re-login does not exist.
    #[error("account {id} not found")]
    UnknownAccount {
        /// The account.
        id: AccountId,
    },
    /// The new account was refused: its refresh token was already redeemed
    /// here (a generation claim), or an entry is invalid.
    #[error("the account was not stored: {0}")]
    Refused(#[source] ImportRefused),
    /// The database failed.
    #[error("{operation} failed: {source}")]
    Store {
        /// What was being done.
        operation: &'static str,
        /// The failure.
        #[source]
        source: StorageError,
    },
}

impl OnboardingError {
    fn store(operation: &'static str) -> impl FnOnce(StorageError) -> Self {
        move |source| Self::Store { operation, source }
    }
}

/// What a parked login was begun for: [`take`] refuses to complete it for
/// anything else, so a session begun for one account cannot replace
/// another account's credentials, nor a relogin create a new account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginPurpose {
    /// A login that creates an account.
    NewAccount,
    /// The relogin of this account.
    Relogin(AccountId),
}

impl std::fmt::Display for LoginPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NewAccount => f.write_str("a new account"),
            Self::Relogin(id) => write!(f, "the relogin of account {id}"),
        }
    }
}

/// The stored payload: the session and its purpose.
#[derive(Deserialize)]
struct Parked {
    purpose: LoginPurpose,
    session: LoginSession,
}

/// [`Parked`] as written.
#[derive(Serialize)]
struct ParkedRef<'a> {
    purpose: LoginPurpose,
    session: &'a LoginSession,
}

/// A login stored for later completion, as [`park`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedLogin {
    /// The id to complete it by.
    pub session_id: String,
    /// When it can no longer be completed, by the database's clock.
    pub expires_at: DateTime<Utc>,
}

/// Starts a login on `platform`: a session whose authorize URL the user
/// opens. Nothing is sent or stored.
///
/// # Errors
/// [`OnboardingError::Unsupported`]; [`OnboardingError::Login`] for an
/// option the provider refuses or a name the catalog would refuse.
pub fn begin(
    stack: &RefreshStack,
    platform: &Platform,
    options: LoginOptions,
) -> Result<LoginSession, OnboardingError> {
    if let Some(name) = &options.name
        && (name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS)
    {
        return Err(LoginError::InvalidOption {
            option: "name",
            reason: format!("must be 1 to {MAX_NAME_CHARS} characters, not blank"),
        }
        .into());
    }
    let flow = stack
        .login_flow(platform)
        .ok_or_else(|| OnboardingError::Unsupported {
            platform: platform.clone(),
        })?;
    let session = flow.begin_login(options)?;
    info!(session_id = session.session_id(), platform = %platform, "login begun");
    Ok(session)
}

/// Stores `session`, begun for `purpose`, in the database until its own
/// expiry (10–30 min), so any process on the database can [`take`] it for
/// that purpose.
///
/// # Errors
/// [`OnboardingError::Store`].
pub async fn park(
    stack: &RefreshStack,
    session: &LoginSession,
    purpose: LoginPurpose,
) -> Result<ParkedLogin, OnboardingError> {
    let parked = ParkedRef { purpose, session };
    let payload = serde_json::to_string(&parked).map_err(|_| OnboardingError::CorruptSession {
        reason: "the session cannot be serialized".to_owned(),
    })?;
    let ttl = (session.expires_at() - session.created_at())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let login = PendingLogin {
        id: session.session_id().to_owned(),
        platform: session.platform().clone(),
        payload: payload.into(),
    };
    let store = stack.login_sessions();
    // Opportunistic housekeeping: expired sessions of abandoned logins.
    let _ = store.purge(100).await;
    let expires_at = store
        .put(&login, ttl)
        .await
        .map_err(OnboardingError::store("storing the login session"))?;
    Ok(ParkedLogin {
        session_id: login.id,
        expires_at,
    })
}

/// Takes the parked session `session_id` out of the database for
/// `purpose`: of all callers, one gets it, once. Its expiry is the
/// database's judgement (by the database clock); completing it does not
/// judge it again by this process's clock. A session begun for another
/// purpose is used up and refused.
///
/// # Errors
/// [`OnboardingError::SessionGone`], [`OnboardingError::SessionExpired`],
/// [`OnboardingError::SessionMismatch`], [`OnboardingError::CorruptSession`],
/// [`OnboardingError::Store`].
pub async fn take(
    stack: &RefreshStack,
    session_id: &str,
    purpose: LoginPurpose,
) -> Result<LoginSession, OnboardingError> {
    let taken = stack
        .login_sessions()
        .take(session_id)
        .await
        .map_err(|e| match e.kind() {
            StorageErrorKind::InvalidData => OnboardingError::CorruptSession {
                reason: e.to_string(),
            },
            _ => OnboardingError::Store {
                operation: "reading the login session",
                source: e,
            },
        })?;
    match taken {
        // The database judged it live by its clock; that is the one clock.
        LoginTake::Taken(login) => {
            let parked: Parked = serde_json::from_str(login.payload.expose()).map_err(|e| {
                OnboardingError::CorruptSession {
                    reason: format!(
                        "not a login session (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                }
            })?;
            if parked.purpose != purpose {
                warn!(
                    session_id,
                    begun = %parked.purpose,
                    asked = %purpose,
                    "login session completed for another purpose than it was begun for; refused"
                );
                return Err(OnboardingError::SessionMismatch {
                    begun: parked.purpose,
                    asked: purpose,
                });
            }
            Ok(LoginSession::admitted_by_store(parked.session))
        }
        LoginTake::Expired => Err(OnboardingError::SessionExpired),
        LoginTake::Absent => Err(OnboardingError::SessionGone),
    }
}

/// Completes `session` with what the user pasted and stores the new
/// account; returns it (as stored) and the post-login warnings.
///
/// # Errors
/// [`OnboardingError::Login`] when the login fails (nothing is stored);
/// [`OnboardingError::Refused`] or [`OnboardingError::Store`] when the
/// account cannot be stored.
pub async fn complete_new(
    stack: &RefreshStack,
    session: &LoginSession,
    pasted: &str,
) -> Result<(Account, Vec<String>), OnboardingError> {
    let outcome = exchange(stack, session, pasted).await?;
    let warnings = outcome.warnings.clone();
    let account = store_outcome(stack, outcome).await?;
    info!(
        session_id = session.session_id(),
        account_id = account.id.get(),
        platform = %account.platform,
        "login completed: account created"
    );
    Ok((account, warnings))
}

/// Completes `session` and replaces the credentials of account `id` with
/// the new grant's (its version is bumped: an in-flight refresh's fenced
/// write loses). An account in `error` becomes `active` again. Name,
/// proxy and priority are kept; so is `extra`, unless the identity changed
/// and that was allowed (then its identity fields become the login's).
///
/// The new grant's identity (the [`IDENTITY_KEYS`] the outcome and the
/// account both carry, in `extra` or the credentials) is compared with
/// the account's **before** anything is replaced: a login as someone else
/// is [`OnboardingError::IdentityChanged`] unless `allow_identity_change`.
///
/// # Errors
/// [`OnboardingError::UnknownAccount`], [`OnboardingError::WrongPlatform`]
/// (checked before anything is sent), [`OnboardingError::Login`],
/// [`OnboardingError::IdentityChanged`], [`OnboardingError::Store`].
pub async fn complete_relogin(
    stack: &RefreshStack,
    id: AccountId,
    session: &LoginSession,
    pasted: &str,
    allow_identity_change: bool,
) -> Result<(Account, Vec<String>), OnboardingError> {
    let account = stack
        .repository()
        .get(id)
        .await
        .map_err(OnboardingError::store("reading the account"))?
        .ok_or(OnboardingError::UnknownAccount { id })?;
    if account.platform != *session.platform() {
        return Err(OnboardingError::WrongPlatform {
            id,
            account: account.platform,
            login: session.platform().clone(),
        });
    }
    let outcome = exchange(stack, session, pasted).await?;
    let mut warnings = outcome.warnings.clone();
    let changed = identity_changes(&account, &outcome);
    if !changed.is_empty() {
        if !allow_identity_change {
            warn!(
                session_id = session.session_id(),
                account_id = id.get(),
                fields = ?changed,
                "relogin refused: another upstream identity"
            );
            return Err(OnboardingError::IdentityChanged {
                id,
                fields: changed.join(", "),
            });
        }
        warnings.push(format!(
            "the account's upstream identity changed ({} differ), as allowed",
            changed.join(", ")
        ));
    }
    let catalog = stack.catalog();
    let mut stored = catalog
        .replace_credentials(id, &outcome.credentials)
        .await
        .map_err(|e| match e.kind() {
            StorageErrorKind::NotFound => OnboardingError::UnknownAccount { id },
            _ => OnboardingError::Store {
                operation: "replacing the credentials",
                source: e,
            },
        })?;
    let mut update = MetadataUpdate::default();
    if stored.status == AccountStatus::Error {
        update.status = Some(AccountStatus::Active);
        update.error_message = Some(None);
    }
    if !changed.is_empty() {
        let mut extra = stored.extra.clone();
        extra.extend(
            outcome
                .extra
                .iter()
                .filter(|(key, _)| IDENTITY_KEYS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        update.extra = Some(extra);
    }
    if update != MetadataUpdate::default() {
        stored = catalog
            .update_metadata(id, &update)
            .await
            .map_err(OnboardingError::store(
                "updating the account after the relogin",
            ))?;
    }
    stack.tokens().invalidate_local(id);
    info!(
        session_id = session.session_id(),
        account_id = id.get(),
        credentials_version = stored.credentials_version,
        identity_changed = !changed.is_empty(),
        "login completed: credentials replaced"
    );
    Ok((stored, warnings))
}

/// Stores a login's (or an imported file's) outcome as a new account,
/// refusing a refresh token already redeemed here.
///
/// # Errors
/// [`OnboardingError::Refused`].
pub async fn store_outcome(
    stack: &RefreshStack,
    outcome: LoginOutcome,
) -> Result<Account, OnboardingError> {
    let mut account = NewAccount::new(
        outcome.name,
        outcome.platform,
        outcome.account_type,
        outcome.credentials,
    );
    account.extra = outcome.extra;
    account.proxy = outcome.proxy;
    let mut stored = stack
        .import(vec![account])
        .await
        .map_err(OnboardingError::Refused)?;
    Ok(stored.remove(0))
}

async fn exchange(
    stack: &RefreshStack,
    session: &LoginSession,
    pasted: &str,
) -> Result<LoginOutcome, OnboardingError> {
    let flow =
        stack
            .login_flow(session.platform())
            .ok_or_else(|| OnboardingError::Unsupported {
                platform: session.platform().clone(),
            })?;
    Ok(flow.complete_login(session, pasted).await?)
}

/// The fields that name an upstream identity: emails, account, user and
/// organization ids, as the logins and imports write them in `extra`
/// (Claude's `email_address`, `account_uuid`, `org_uuid`; everyone's
/// `email`) or in the credentials (OpenAI's id_token claims,
/// Antigravity's `email`).
pub const IDENTITY_KEYS: [&str; 6] = [
    "email",
    "email_address",
    "account_uuid",
    "org_uuid",
    "chatgpt_account_id",
    "chatgpt_user_id",
];

/// The [`IDENTITY_KEYS`] whose value in the login's outcome differs from
/// the account's (in `extra` or the credentials; emails compared without
/// case). A field either side lacks is not compared: there is nothing to
/// tell identities apart by.
fn identity_changes(account: &Account, outcome: &LoginOutcome) -> Vec<&'static str> {
    let text = |extra: &Map<String, Value>, credentials: &Credentials, key: &str| {
        extra
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| Some(credentials.string_view(key)))
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
    };
    IDENTITY_KEYS
        .into_iter()
        .filter(|key| {
            let old = text(&account.extra, &account.credentials, key);
            let new = text(&outcome.extra, &outcome.credentials, key);
            matches!((old, new), (Some(old), Some(new)) if old != new)
        })
        .collect()
}
