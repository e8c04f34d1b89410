//! "Re-login" on an account's page: the onboarding flow's relogin
//! ([`refresh_facade::login`]) in two CSRF-checked POSTs.
//!
//! 1. `POST /accounts/{id}/relogin` begins a login on the account's
//!    platform (the CLI's options: same grant kind, the account's proxy),
//!    parks it in the database's login sessions like `POST /v1/logins`, and
//!    shows the provider's authorize URL (state and S256 challenge only)
//!    and a form to paste the code or callback URL into.
//! 2. `POST /accounts/{id}/relogin/complete` takes the parked session
//!    (single use: a failed attempt uses it up too) and replaces the
//!    account's credentials; a login as another upstream identity is
//!    refused unless "allow identity change" is ticked. Success redirects
//!    to the account's page with a notice; a failure shows its error code.
//!
//! No page shows the pasted code, the PKCE verifier, or a token: the
//! verifier stays in the sealed parked session, and a failure shows only
//! the error's code and a fixed hint.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use refresh_facade::login::{self, LoginPurpose, OnboardingError};
use refresh_facade::providers::login::Redirect as LoginRedirect;
use refresh_facade::{Account, AccountId};
use tracing::{info, warn};

use super::layout::{Nav, page, relative};
use super::{AppState, Operator, bounded, csrf_refused, field, form, html_response};
use crate::serve::logins::error_code;

type Shared = Arc<AppState>;

fn nav(operator: &Operator) -> Nav<'_> {
    Nav {
        csrf: &operator.csrf,
        current: "accounts",
    }
}

/// The account `id`, or the page to answer instead.
async fn account(
    state: &AppState,
    operator: &Operator,
    id: AccountId,
) -> Result<Account, Response> {
    let read = bounded(state.stack.repository().get(id)).await;
    let failed = |what: String| {
        let body = html! {
            h1 { "Re-login" }
            p.notice.bad role="alert" { (what) }
            p { a href={ "/accounts/" (id.get()) } { "« Back to the account" } }
        };
        html_response(
            StatusCode::SERVICE_UNAVAILABLE,
            page("Re-login", Some(&nav(operator)), &body),
        )
    };
    match read {
        Ok(Some(account)) => Ok(account),
        Ok(None) => Err(StatusCode::NOT_FOUND.into_response()),
        Err(e) => Err(failed(format!("Reading the account failed: {e}"))),
    }
}

/// `POST /accounts/{id}/relogin`.
pub(super) async fn begin(
    State(state): State<Shared>,
    operator: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !operator.checks(&form(&body)) {
        return csrf_refused();
    }
    let Ok(id) = id.parse::<i64>().map(AccountId) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let account = match account(&state, &operator, id).await {
        Ok(account) => account,
        Err(response) => return response,
    };
    let options = crate::login::relogin_options(&account, LoginRedirect::Manual);
    let parked = match login::begin(&state.stack, &account.platform, options) {
        Ok(session) => login::park(&state.stack, &session, LoginPurpose::Relogin(id))
            .await
            .map(|parked| (session, parked)),
        Err(e) => Err(e),
    };
    let (session, parked) = match parked {
        Ok(begun) => begun,
        Err(e) => return failure(&operator, &account, &e),
    };
    info!(account_id = %id, session_id = %parked.session_id, "relogin begun on the status page");
    let now = Utc::now();
    let body = html! {
        p { a href={ "/accounts/" (id.get()) } { "« " (account.name) } }
        h1 { "Re-login: " (account.name) }
        ol.steps {
            li {
                "Open the provider's login page (a new tab) and log in as this account's user: "
                a #authorize href=(session.authorize_url()) target="_blank" rel="noopener noreferrer" {
                    "open the " (account.platform.as_str()) " login page"
                }
            }
            li {
                "Paste the code the provider shows, or the whole address-bar URL it redirected to, below."
            }
        }
        form.relogin method="post" action={ "/accounts/" (id.get()) "/relogin/complete" } {
            input type="hidden" name="csrf" value=(operator.csrf);
            input type="hidden" name="session_id" value=(parked.session_id);
            label {
                "Code or callback URL"
                input type="text" name="pasted" required autocomplete="off" spellcheck="false";
            }
            label.check {
                input type="checkbox" name="allow_identity_change" value="1";
                " Allow identity change (accept a login as another upstream user and record the new identity)"
            }
            button.primary type="submit" { "Complete re-login" }
        }
        p.muted {
            "This login can be completed once; it expires " (relative(Some(parked.expires_at), now)) "."
        }
    };
    html_response(
        StatusCode::OK,
        page("Re-login", Some(&nav(&operator)), &body),
    )
}

/// `POST /accounts/{id}/relogin/complete`.
pub(super) async fn complete(
    State(state): State<Shared>,
    operator: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form(&body);
    if !operator.checks(&form) {
        return csrf_refused();
    }
    let Ok(id) = id.parse::<i64>().map(AccountId) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let account = match account(&state, &operator, id).await {
        Ok(account) => account,
        Err(response) => return response,
    };
    let session_id = field(&form, "session_id").unwrap_or_default();
    let pasted = field(&form, "pasted").unwrap_or_default();
    let allow = field(&form, "allow_identity_change").is_some_and(|v| !v.is_empty());
    let result = match login::take(&state.stack, session_id, LoginPurpose::Relogin(id)).await {
        Ok(session) => login::complete_relogin(&state.stack, id, &session, pasted, allow).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((stored, warnings)) => {
            info!(
                account_id = %id,
                credentials_version = stored.credentials_version,
                "relogin completed on the status page"
            );
            for warning in &warnings {
                warn!(account_id = %id, %warning, "relogin warning");
            }
            let notice = if warnings.is_empty() {
                "relogged_in"
            } else {
                "relogged_in_warnings"
            };
            Redirect::to(&format!("/accounts/{}?notice={notice}", id.get())).into_response()
        }
        Err(e) => failure(&operator, &account, &e),
    }
}

/// A fixed hint for an error code.
fn hint(code: &str) -> &'static str {
    match code {
        "identity_changed" => {
            "The login is for another upstream identity than this account's; nothing was replaced. \
             To accept it, start again and tick \"allow identity change\"."
        }
        "login_session_gone" | "login_session_expired" | "login_session_unreadable" => {
            "This login was already used or expired. Start again."
        }
        "login_session_mismatch" => {
            "This login was begun for another account or for a new account; it is used up and \
             nothing was replaced. Start again from this account's page."
        }
        "invalid_paste" | "state_missing" | "state_mismatch" => {
            "The pasted text is not this login's code or callback URL. Start again and paste what the provider shows."
        }
        "authorization_denied" => "The provider reports that the login was denied.",
        "exchange_rejected" => "The provider refused the code. Start again.",
        "exchange_failed" | "discovery_failed" => {
            "The provider could not be reached or answered unexpectedly. See the logs."
        }
        _ => "See the logs.",
    }
}

/// The page of a failed relogin: the error's code and a fixed hint (no
/// error text: nothing pasted or upstream is echoed), and a way to start
/// again.
fn failure(operator: &Operator, account: &Account, error: &OnboardingError) -> Response {
    let (status, code) = error_code(error);
    warn!(account_id = %account.id, code, "relogin on the status page failed");
    let id = account.id.get();
    let body: Markup = html! {
        p { a href={ "/accounts/" (id) } { "« " (account.name) } }
        h1 { "Re-login: " (account.name) }
        p.notice.bad role="alert" {
            "Re-login failed (" code { (code) } "). " (hint(code))
        }
        div.actions {
            form method="post" action={ "/accounts/" (id) "/relogin" } {
                input type="hidden" name="csrf" value=(operator.csrf);
                button.primary type="submit" { "Start again" }
            }
        }
    };
    html_response(status, page("Re-login failed", Some(&nav(operator)), &body))
}
