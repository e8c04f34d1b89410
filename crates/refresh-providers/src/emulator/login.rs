//! The login side of the emulator: each provider's authorize endpoint,
//! the `authorization_code` exchange at the token endpoints (PKCE S256,
//! client and redirect checks, single-use codes), Google's userinfo, the
//! login counters ([`LoginStats`]) and an opt-in journal of every request
//! ([`RecordedRequest`]) for tests that look for a secret on the wire.
//!
//! An authorization "logs in" as a new user: the exchange creates a grant
//! (from the next queued [`GrantSpec`] of that provider, else the
//! defaults) that then refreshes, rotates and is revoked like a seeded
//! one. A code used twice is refused, and the grant its first use created
//! is revoked (RFC 6749 §4.1.2).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::code_assist::bearer_grant;
use super::grant::{EmulatedProvider, GrantId, GrantSpec};
use super::reply::{flat_error, google_api_error, html, json, openai_error, serve};
use super::server::{ConnControl, Emulator};
use super::state::{Issued, Shared};
use super::token::{claude_granted, google_client_refusal, google_granted, openai_granted};
use super::{issue, paths};

/// How long an authorization code can be exchanged.
const CODE_LIFETIME_SECS: i64 = 600;
/// Largest request body the journal keeps.
const JOURNAL_BODY_CAP: usize = 1 << 20;

/// Claude's known scopes.
const CLAUDE_SCOPES: &[&str] = &[
    "org:create_api_key",
    "user:profile",
    "user:inference",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
];
/// OpenAI's known scopes.
const OPENAI_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "offline_access",
    "api.connectors.read",
    "api.connectors.invoke",
];
/// Claude's manual redirects (the loopback `http://localhost:<port>/callback`
/// is accepted too).
const CLAUDE_REDIRECTS: &[&str] = &[
    "https://platform.claude.com/oauth/code/callback",
    "https://console.anthropic.com/oauth/code/callback",
];
/// The only redirects of the Codex CLI client.
const OPENAI_REDIRECTS: &[&str] = &[
    "http://localhost:1455/auth/callback",
    "http://localhost:1457/auth/callback",
];
/// Google's code page (the Gemini CLI client only).
const GOOGLE_AUTHCODE: &str = "https://codeassist.google.com/authcode";

/// Login counters. No code, verifier or token values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStats {
    /// Authorize requests answered with a code.
    pub authorizations: u64,
    /// Authorize requests refused (an error page, or a redirect with
    /// `error`).
    pub authorize_refusals: u64,
    /// Successful code exchanges.
    pub exchanges: u64,
    /// Successful code exchanges by provider (`claude`, `openai`,
    /// `gemini`, `antigravity`).
    pub exchanges_by_provider: BTreeMap<String, u64>,
    /// Refused code exchanges (any reason).
    pub exchange_rejections: u64,
    /// Exchanges whose PKCE verifier was missing, malformed or wrong.
    pub pkce_failures: u64,
    /// Exchanges of an already used code (each revokes its grant).
    pub code_reuse_attempts: u64,
    /// Userinfo answers.
    pub userinfo_calls: u64,
}

/// One request as the emulator received it (journal enabled with
/// [`Emulator::record_requests`]). Holds whatever the client sent, tokens
/// included: `Debug` shows the method and path only.
#[derive(Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// The body (while recording, a request body over 1 MiB is answered
    /// 413).
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    /// Whether `needle` appears anywhere in the request: the URI (raw and
    /// percent-decoded), a header, or the body (raw and form-decoded).
    pub fn contains(&self, needle: &str) -> bool {
        let decoded: String = url::form_urlencoded::parse(self.uri.as_bytes())
            .map(|(k, v)| format!("{k}={v}&"))
            .collect();
        let body = String::from_utf8_lossy(&self.body);
        let body_decoded: String = url::form_urlencoded::parse(&self.body)
            .map(|(k, v)| format!("{k}={v}&"))
            .collect();
        self.uri.contains(needle)
            || decoded.contains(needle)
            || self
                .headers
                .iter()
                .any(|(k, v)| k.contains(needle) || v.contains(needle))
            || body.contains(needle)
            || body_decoded.contains(needle)
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// An issued, not yet (or already) exchanged authorization code.
struct PendingCode {
    provider: EmulatedProvider,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    state: Option<String>,
    /// Whether the exchange returns a refresh token (`offline_access`,
    /// `access_type=offline`).
    offline: bool,
    issued_at: DateTime<Utc>,
    used: bool,
    grant: Option<GrantId>,
    spec: GrantSpec,
}

/// The user an unqueued login logs in as.
pub const DEFAULT_LOGIN_EMAIL: &str = "user@example.com";

#[derive(Default)]
struct Inner {
    codes: HashMap<String, PendingCode>,
    profiles: VecDeque<GrantSpec>,
    stats: LoginStats,
    recording: bool,
    journal: Vec<RecordedRequest>,
}

/// The login state shared by the handlers.
#[derive(Default)]
pub(crate) struct LoginState {
    inner: Mutex<Inner>,
}

impl LoginState {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_profile(&self, provider: EmulatedProvider) -> GrantSpec {
        let mut inner = self.inner();
        let found = inner
            .profiles
            .iter()
            .position(|p| p.provider.is_none_or(|q| q == provider));
        found
            .and_then(|i| inner.profiles.remove(i))
            .unwrap_or_else(|| GrantSpec {
                email: Some(DEFAULT_LOGIN_EMAIL.to_owned()),
                ..GrantSpec::default()
            })
    }
}

impl Emulator {
    /// Queues the user the next authorization of `spec.provider` (any
    /// provider when `None`) logs in as: its email, Code Assist project,
    /// tiers, onboarding, Drive quota. Unqueued logins get the defaults and
    /// log in as one user, [`DEFAULT_LOGIN_EMAIL`] (a browser stays logged
    /// in): a relogin is the same upstream identity unless a test queues
    /// another.
    pub fn queue_login(&self, spec: GrantSpec) {
        self.shared.login.inner().profiles.push_back(spec);
    }

    /// The login counters.
    pub fn login_stats(&self) -> LoginStats {
        self.shared.login.inner().stats.clone()
    }

    /// Starts (`true`) or stops recording every request (admin calls
    /// excepted) into the journal.
    pub fn record_requests(&self, on: bool) {
        self.shared.login.inner().recording = on;
    }

    /// The requests recorded so far, in arrival order.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.shared.login.inner().journal.clone()
    }
}

/// The login routes: the three authorize endpoints, userinfo, and
/// `POST /admin/logins` (queue a [`GrantSpec`]), `GET /admin/login-stats`.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    [Authorize::Claude, Authorize::OpenAi, Authorize::Google]
        .into_iter()
        .fold(Router::new(), |router, which| {
            router.route(which.path(), authorize_endpoint(which))
        })
        .route(paths::GOOGLE_USERINFO, get(userinfo))
        .route("/admin/logins", post(queue_login))
        .route("/admin/login-stats", get(login_stats))
}

/// The journal layer: records the request when recording is on.
pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if !shared.login.inner().recording || request.uri().path().starts_with("/admin") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, JOURNAL_BODY_CAP).await else {
        // Not kept whole, so not forwarded either: say so.
        return html(
            413,
            "<html><body>emulator journal: request body over 1 MiB</body></html>",
        );
    };
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(String::new, ToString::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: bytes.to_vec(),
    };
    shared.login.inner().journal.push(recorded);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn queue_login(State(shared): State<Arc<Shared>>, Json(spec): Json<GrantSpec>) -> StatusCode {
    shared.login.inner().profiles.push_back(spec);
    StatusCode::NO_CONTENT
}

async fn login_stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.login.inner().stats.clone()).into_response()
}

/// First value of each query parameter.
fn query_params(raw: Option<&str>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// Which authorize endpoint was called.
#[derive(Clone, Copy)]
enum Authorize {
    Claude,
    OpenAi,
    Google,
}

impl Authorize {
    fn path(self) -> &'static str {
        match self {
            Self::Claude => paths::CLAUDE_AUTHORIZE,
            Self::OpenAi => paths::OPENAI_AUTHORIZE,
            Self::Google => paths::GOOGLE_AUTHORIZE,
        }
    }
}

/// `GET` of the `which` authorize endpoint (counted, with the faults and
/// the latency).
fn authorize_endpoint(which: Authorize) -> MethodRouter<Arc<Shared>> {
    get(
        move |State(shared): State<Arc<Shared>>,
              Extension(control): Extension<ConnControl>,
              RawQuery(query): RawQuery| async move {
            serve(&shared, &control, which.path(), || {
                authorize(&shared, which, &query_params(query.as_deref()))
            })
            .await
        },
    )
}

/// Whether `uri` is an `http` loopback URL (any port and path), optionally
/// with exactly `path`.
fn is_loopback(uri: &str, path: Option<&str>) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
            && u.query().is_none()
            && path.is_none_or(|p| u.path() == p)
    })
}

/// A refusal shown to the user instead of a redirect (bad client or
/// redirect URI: RFC 6749 §4.1.2.1 forbids redirecting then).
fn error_page(shared: &Shared, what: &str) -> Response {
    shared.login.inner().stats.authorize_refusals += 1;
    html(
        400,
        &format!("<html><body><h1>Authorization error</h1><p>{what}</p></body></html>"),
    )
}

/// A redirect to `redirect_uri` with `params` added to its query.
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut location) = url::Url::parse(redirect_uri) else {
        return html(400, "<html><body>bad redirect_uri</body></html>");
    };
    location.query_pairs_mut().extend_pairs(params);
    let mut answer = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        answer.headers_mut().insert(header::LOCATION, value);
    }
    answer
}

/// The authorize endpoint: client and redirect checks (refused with an
/// error page), then response type, scope and PKCE checks (refused with a
/// redirect carrying `error`), then a redirect with a new code.
fn authorize(shared: &Shared, endpoint: Authorize, p: &HashMap<String, String>) -> Response {
    let param = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    let client_id = param("client_id");
    let redirect_uri = param("redirect_uri");
    let config = &shared.config;
    let google_index = config
        .google_clients
        .iter()
        .position(|(id, _)| id == client_id);
    let provider = match endpoint {
        Authorize::Claude if client_id == config.claude_client_id => EmulatedProvider::Claude,
        Authorize::OpenAi if config.openai_client_ids.iter().any(|c| c == client_id) => {
            EmulatedProvider::OpenAi
        }
        // The second configured Google client is Antigravity's.
        Authorize::Google if google_index == Some(1) => EmulatedProvider::Antigravity,
        Authorize::Google if google_index.is_some() => EmulatedProvider::Gemini,
        _ => return error_page(shared, "invalid_client: the OAuth client was not found"),
    };
    let redirect_ok = match endpoint {
        Authorize::Claude => {
            CLAUDE_REDIRECTS.contains(&redirect_uri) || is_loopback(redirect_uri, Some("/callback"))
        }
        Authorize::OpenAi => OPENAI_REDIRECTS.contains(&redirect_uri),
        Authorize::Google => {
            is_loopback(redirect_uri, None)
                || (redirect_uri == GOOGLE_AUTHCODE && google_index == Some(0))
        }
    };
    if !redirect_ok {
        return error_page(
            shared,
            "redirect_uri_mismatch: the redirect URI is not registered",
        );
    }
    let state = p.get("state").filter(|s| !s.is_empty()).cloned();
    let refuse = |error: &str| {
        shared.login.inner().stats.authorize_refusals += 1;
        let mut params = vec![("error", error)];
        if let Some(state) = &state {
            params.push(("state", state.as_str()));
        }
        redirect_to(redirect_uri, &params)
    };
    if param("response_type") != "code" {
        return refuse("unsupported_response_type");
    }
    let scope = param("scope");
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let scope_ok = !scopes.is_empty()
        && match endpoint {
            Authorize::Claude => scopes.iter().all(|s| CLAUDE_SCOPES.contains(s)),
            Authorize::OpenAi => {
                scopes.contains(&"openid") && scopes.iter().all(|s| OPENAI_SCOPES.contains(s))
            }
            Authorize::Google => scopes.iter().all(|s| {
                let known = s.starts_with("https://www.googleapis.com/auth/")
                    || matches!(*s, "openid" | "email" | "profile");
                // The built-in Gemini CLI client cannot get restricted scopes.
                let restricted = google_index == Some(0)
                    && (s.contains("/auth/generative-language") || s.contains("/auth/drive"));
                known && !restricted
            }),
        };
    if !scope_ok {
        return refuse("invalid_scope");
    }
    let challenge = param("code_challenge");
    if param("code_challenge_method") != "S256" || !is_s256_challenge(challenge) {
        return refuse("invalid_request");
    }
    let offline = match endpoint {
        Authorize::OpenAi => scopes.contains(&"offline_access"),
        Authorize::Google => param("access_type") == "offline",
        Authorize::Claude => true,
    };
    let code = match endpoint {
        Authorize::Claude => issue::token(""),
        Authorize::OpenAi => issue::token("ac_"),
        Authorize::Google => issue::token("4/0A"),
    };
    let spec = shared.login.take_profile(provider);
    {
        let mut inner = shared.login.inner();
        inner.stats.authorizations += 1;
        inner.codes.insert(
            code.clone(),
            PendingCode {
                provider,
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                scope: scope.to_owned(),
                state: state.clone(),
                offline,
                issued_at: Utc::now(),
                used: false,
                grant: None,
                spec,
            },
        );
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &state {
        params.push(("state", state.as_str()));
    }
    if matches!(endpoint, Authorize::Google) {
        params.push(("scope", scope));
    }
    redirect_to(redirect_uri, &params)
}

/// 43 base64url characters: a SHA-256 digest.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.1: 43–128 unreserved characters.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Why an exchange was refused.
enum Refusal {
    /// `invalid_request` with a description.
    Request(&'static str),
    /// `invalid_grant` with a description.
    Grant(&'static str),
}

/// A successful exchange.
struct Redeemed {
    issued: Issued,
    scope: String,
}

/// Checks and consumes the code of an exchange (the caller checked the
/// client's authentication).
fn redeem(
    shared: &Shared,
    serves: impl Fn(EmulatedProvider) -> bool,
    fields: &HashMap<String, String>,
) -> Result<Redeemed, Refusal> {
    let result = check_and_take(shared, &serves, fields);
    let (provider, client_id, spec, offline, scope, code) = match result {
        Ok(taken) => taken,
        Err((refusal, revoke)) => {
            if let Some(grant) = revoke {
                shared.revoke(grant);
            }
            shared.login.inner().stats.exchange_rejections += 1;
            return Err(refusal);
        }
    };
    let spec = GrantSpec {
        provider: Some(provider),
        client_id: Some(client_id),
        refresh_token: None,
        ..spec
    };
    let Ok(mut issued) = shared.seed_issued(spec) else {
        shared.login.inner().stats.exchange_rejections += 1;
        return Err(Refusal::Grant("the grant could not be created"));
    };
    let mut inner = shared.login.inner();
    if let Some(pending) = inner.codes.get_mut(&code) {
        pending.grant = Some(issued.grant);
    }
    inner.stats.exchanges += 1;
    *inner
        .stats
        .exchanges_by_provider
        .entry(provider_name(provider).to_owned())
        .or_default() += 1;
    issued.refresh_token = issued.refresh_token.filter(|_| offline);
    Ok(Redeemed { issued, scope })
}

type Taken = (EmulatedProvider, String, GrantSpec, bool, String, String);

/// Under the lock: every check, then the code marked used.
fn check_and_take(
    shared: &Shared,
    serves: &impl Fn(EmulatedProvider) -> bool,
    fields: &HashMap<String, String>,
) -> Result<Taken, (Refusal, Option<GrantId>)> {
    let field = |k: &str| fields.get(k).map(String::as_str);
    let Some(code) = field("code") else {
        return Err((Refusal::Request("Missing required parameter: code"), None));
    };
    let mut inner = shared.login.inner();
    let Some(pending) = inner.codes.get_mut(code) else {
        return Err((Refusal::Grant("Invalid authorization code"), None));
    };
    if !serves(pending.provider) {
        return Err((Refusal::Grant("Invalid authorization code"), None));
    }
    if pending.used {
        let grant = pending.grant;
        inner.stats.code_reuse_attempts += 1;
        return Err((Refusal::Grant("Authorization code already used"), grant));
    }
    if (Utc::now() - pending.issued_at).num_seconds() > CODE_LIFETIME_SECS {
        return Err((Refusal::Grant("Authorization code expired"), None));
    }
    if field("client_id") != Some(pending.client_id.as_str()) {
        return Err((
            Refusal::Grant("The code was issued to another client"),
            None,
        ));
    }
    if field("redirect_uri") != Some(pending.redirect_uri.as_str()) {
        return Err((
            Refusal::Grant("redirect_uri does not match the authorization"),
            None,
        ));
    }
    // Claude's exchange carries the state: it must be the authorization's.
    if let (Some(sent), Some(expected)) = (field("state"), pending.state.as_deref())
        && sent != expected
    {
        return Err((
            Refusal::Grant("state does not match the authorization"),
            None,
        ));
    }
    let verified = field("code_verifier").is_some_and(|v| {
        is_verifier(v) && URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == pending.challenge
    });
    if !verified {
        inner.stats.pkce_failures += 1;
        return Err((Refusal::Grant("PKCE verification failed"), None));
    }
    pending.used = true;
    let taken = (
        pending.provider,
        pending.client_id.clone(),
        pending.spec.clone(),
        pending.offline,
        pending.scope.clone(),
        code.to_owned(),
    );
    Ok(taken)
}

fn provider_name(provider: EmulatedProvider) -> &'static str {
    match provider {
        EmulatedProvider::Claude => "claude",
        EmulatedProvider::OpenAi => "openai",
        EmulatedProvider::Gemini => "gemini",
        EmulatedProvider::Antigravity => "antigravity",
    }
}

/// Claude's `authorization_code` exchange (JSON fields, already checked
/// for content type).
pub(crate) fn claude_exchange(shared: &Shared, fields: &HashMap<String, String>) -> Response {
    if fields.get("client_id") != Some(&shared.config.claude_client_id) {
        shared.login.inner().stats.exchange_rejections += 1;
        return flat_error(401, "invalid_client", "Client authentication failed");
    }
    match redeem(shared, |p| p == EmulatedProvider::Claude, fields) {
        Ok(r) => claude_granted(r.issued, &r.scope),
        Err(Refusal::Request(d)) => flat_error(400, "invalid_request", d),
        Err(Refusal::Grant(d)) => flat_error(400, "invalid_grant", d),
    }
}

/// OpenAI's `authorization_code` exchange (form fields).
pub(crate) fn openai_exchange(shared: &Shared, fields: &HashMap<String, String>) -> Response {
    let client_id = fields.get("client_id").cloned().unwrap_or_default();
    if !shared.config.openai_client_ids.contains(&client_id) {
        shared.login.inner().stats.exchange_rejections += 1;
        return openai_error(401, "invalid_client", "Unknown client.");
    }
    match redeem(shared, |p| p == EmulatedProvider::OpenAi, fields) {
        Ok(r) => openai_granted(r.issued, &r.scope, &client_id),
        Err(Refusal::Request(d)) => openai_error(400, "invalid_request", d),
        Err(Refusal::Grant(d)) => openai_error(400, "invalid_grant", d),
    }
}

/// Google's `authorization_code` exchange (form fields; the client secret
/// is checked).
pub(crate) fn google_exchange(shared: &Shared, fields: &HashMap<String, String>) -> Response {
    if let Some(refused) = google_client_refusal(shared, fields) {
        shared.login.inner().stats.exchange_rejections += 1;
        return refused;
    }
    match redeem(shared, EmulatedProvider::is_google, fields) {
        Ok(r) => google_granted(r.issued, &r.scope),
        Err(Refusal::Request(d)) => flat_error(400, "invalid_request", d),
        Err(Refusal::Grant(d)) => flat_error(400, "invalid_grant", d),
    }
}

/// `GET /oauth2/v2/userinfo` (Google, Bearer).
async fn userinfo(
    State(shared): State<Arc<Shared>>,
    Extension(control): Extension<ConnControl>,
    headers: HeaderMap,
) -> Response {
    serve(
        &shared,
        &control,
        paths::GOOGLE_USERINFO,
        || match bearer_grant(&shared, &headers)
            .and_then(|id| shared.email_of(id).map(|email| (id, email)))
        {
            Some((id, email)) => {
                shared.login.inner().stats.userinfo_calls += 1;
                let given = email.split('@').next().unwrap_or_default().to_owned();
                json(
                    200,
                    &json!({
                        "id": format!("1{:020}", id.0),
                        "email": email,
                        "verified_email": true,
                        "name": format!("{given} Emulated"),
                        "given_name": given,
                        "family_name": "Emulated",
                        "picture": "https://lh3.googleusercontent.com/a/emulated",
                    }),
                )
            }
            None => google_api_error(
                401,
                "Request is missing required authentication credential.",
                "UNAUTHENTICATED",
            ),
        },
    )
    .await
}
