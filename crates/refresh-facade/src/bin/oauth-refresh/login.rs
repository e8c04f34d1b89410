//! `accounts login` and `accounts relogin`: the OAuth login on the command
//! line. The authorize URL and every message go to stderr; stdout gets only
//! the account id, so `id=$(oauth-refresh accounts login claude)` works.

use std::io::{BufRead, IsTerminal, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse};
use clap::Args;
use refresh_facade::login::{self, OnboardingError};
use refresh_facade::providers::login::{LoginError, LoginOptions, LoginSession, Redirect};
use refresh_facade::{Account, AccountId, AccountType, Platform, RefreshStack};
use tokio_util::sync::CancellationToken;

use crate::config::Loaded;
use crate::error::CliError;
use crate::keys::Missing;
use crate::output;

/// The longest pasted line read from stdin.
const MAX_PASTE_BYTES: u64 = 16 * 1024;

/// `accounts login` flags.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// `anthropic` (or `claude`), `openai`, `gemini` or `antigravity`.
    pub(crate) platform: String,
    /// The account name (default: the account's email, else
    /// `<platform>-<session>`).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The proxy of the code exchange and of every later call of the
    /// account (http, https, socks5, socks5h).
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Claude only: `oauth` (default) or `setup-token`.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) account_type: Option<String>,
    /// Gemini only: `code_assist` (default), `google_one` or `ai_studio`.
    #[arg(long, value_name = "TYPE")]
    pub(crate) oauth_type: Option<String>,
    /// Gemini only: a known Code Assist project (skips discovery).
    #[arg(long, value_name = "ID")]
    pub(crate) project_id: Option<String>,
    /// Use the provider's loopback redirect and receive the callback on its
    /// port (the browser must run on this machine), instead of reading the
    /// pasted code or URL from stdin.
    #[arg(long)]
    pub(crate) listen: bool,
}

/// `accounts relogin` flags.
#[derive(Debug, Args)]
pub(crate) struct ReloginArgs {
    /// The account id.
    pub(crate) id: i64,
    /// Receive the callback on the provider's loopback redirect port (see
    /// `accounts login --listen`).
    #[arg(long)]
    pub(crate) listen: bool,
    /// Accept a login as another upstream identity (email, account or
    /// organization id) than the account's, and record the new identity.
    /// Without it such a relogin is refused and nothing is replaced.
    #[arg(long)]
    pub(crate) allow_identity_change: bool,
}

/// `accounts login`.
pub(crate) async fn login(loaded: &Loaded, args: LoginArgs) -> Result<(), CliError> {
    let platform: Platform = args.platform.parse().map_err(|_| {
        CliError::config("unknown platform: expected anthropic, openai, gemini or antigravity")
    })?;
    let options = LoginOptions {
        name: args.name,
        proxy: args
            .proxy
            .map(|p| {
                p.parse()
                    .map_err(|e| CliError::config(format!("--proxy: {e}")))
            })
            .transpose()?,
        redirect: redirect(args.listen),
        account_type: args
            .account_type
            .map(|t| {
                t.parse::<AccountType>()
                    .map_err(|_| CliError::config("--type: expected oauth or setup-token"))
            })
            .transpose()?,
        oauth_type: args.oauth_type,
        project_id: args.project_id,
        ..LoginOptions::default()
    };
    let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
    let session = login::begin(&stack, &platform, options).map_err(cli_error)?;
    let pasted = obtain_code(&session, args.listen).await?;
    let (account, warnings) = login::complete_new(&stack, &session, &pasted)
        .await
        .map_err(cli_error)?;
    report_warnings(&warnings);
    output::eprint_line(&format!(
        "added account {} ({}, {})",
        account.id.get(),
        account.name,
        account.platform.as_str()
    ));
    output::print_line(&account.id.get().to_string());
    drain(&stack).await;
    Ok(())
}

/// `accounts relogin`.
pub(crate) async fn relogin(loaded: &Loaded, args: ReloginArgs) -> Result<(), CliError> {
    let id = AccountId(args.id);
    let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
    let account = stack
        .repository()
        .get(id)
        .await
        .map_err(|e| CliError::with(format!("cannot read account {}", id.get()), e))?
        .ok_or_else(|| CliError::new(format!("account {} not found", id.get())))?;
    let options = relogin_options(&account, redirect(args.listen));
    let session = login::begin(&stack, &account.platform, options).map_err(cli_error)?;
    let pasted = obtain_code(&session, args.listen).await?;
    let (stored, warnings) =
        login::complete_relogin(&stack, id, &session, &pasted, args.allow_identity_change)
            .await
            .map_err(cli_error)?;
    report_warnings(&warnings);
    output::eprint_line(&format!(
        "replaced the credentials of account {} ({}, credentials version {})",
        stored.id.get(),
        stored.name,
        stored.credentials_version
    ));
    output::print_line(&stored.id.get().to_string());
    drain(&stack).await;
    Ok(())
}

/// The options of a relogin of `account` (the CLI's and the status
/// page's): the same kind of grant as before, through the account's proxy.
pub(crate) fn relogin_options(account: &Account, redirect: Redirect) -> LoginOptions {
    let gemini_string = |key: &str| {
        Some(account.credentials.string_view(key)).filter(|v| {
            !v.trim().is_empty() && v != refresh_facade::providers::PROJECT_DISCOVERY_PENDING
        })
    };
    let is_gemini = account.platform == Platform::Gemini;
    LoginOptions {
        proxy: account.proxy.clone(),
        redirect,
        account_type: (account.platform == Platform::Anthropic).then_some(account.account_type),
        oauth_type: is_gemini.then(|| gemini_string("oauth_type")).flatten(),
        project_id: is_gemini.then(|| gemini_string("project_id")).flatten(),
        ..LoginOptions::default()
    }
}

fn redirect(listen: bool) -> Redirect {
    if listen {
        Redirect::Loopback
    } else {
        Redirect::Manual
    }
}

/// Prints the authorize URL and returns what the browser or the user gave.
async fn obtain_code(session: &LoginSession, listen: bool) -> Result<String, CliError> {
    output::eprint_line("Open this URL in a browser and log in:");
    output::eprint_line("");
    output::eprint_line(&format!("  {}", session.authorize_url()));
    output::eprint_line("");
    let wait = (session.expires_at() - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    if listen {
        return listen_for_callback(session, wait).await;
    }
    output::eprint_line(
        "Then paste the code the provider shows, or the whole address-bar URL it redirected to, and press Enter:",
    );
    let read = tokio::task::spawn_blocking(read_paste);
    match tokio::time::timeout(wait, read).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(CliError::new("cannot read stdin")),
        Err(_) => Err(CliError::new(
            "the login session expired; start a new login",
        )),
    }
}

/// One line from stdin (bounded).
fn read_paste() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        output::eprint_line("> ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .take(MAX_PASTE_BYTES)
        .read_line(&mut line)
        .map_err(|e| CliError::new(format!("cannot read stdin: {}", e.kind())))?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        return Err(CliError::config(
            "nothing was pasted: paste the code or the callback URL on stdin",
        ));
    }
    Ok(line)
}

/// Receives the provider's redirect on the session's loopback redirect URI
/// and returns the callback URL. Only a callback with the session's state
/// (a code or an OAuth `error`) ends the wait; any other request to the
/// callback path (another page's, a foreign or missing state) gets a 400
/// and the wait goes on. `localhost` is served on 127.0.0.1 and, when the
/// machine has it, `[::1]`.
async fn listen_for_callback(session: &LoginSession, wait: Duration) -> Result<String, CliError> {
    let url = url::Url::parse(session.redirect_uri())
        .map_err(|_| CliError::config("the loopback redirect URI does not parse"))?;
    let host = url.host_str().unwrap_or_default();
    let (required, optional): (IpAddr, Option<IpAddr>) = match host {
        "localhost" => (Ipv4Addr::LOCALHOST.into(), Some(Ipv6Addr::LOCALHOST.into())),
        "127.0.0.1" => (Ipv4Addr::LOCALHOST.into(), None),
        "[::1]" => (Ipv6Addr::LOCALHOST.into(), None),
        _ => {
            return Err(CliError::config(format!(
                "--listen needs a loopback redirect URI, not one on {host}"
            )));
        }
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| CliError::config("the loopback redirect URI has no port"))?;
    let address = SocketAddr::new(required, port);
    let mut listeners = vec![
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| CliError::with(format!("cannot listen on {address}"), e))?,
    ];
    // Browsers may resolve localhost to ::1; a machine without IPv6 is fine.
    if let Some(ip) = optional
        && let Ok(listener) = tokio::net::TcpListener::bind((ip, port)).await
    {
        listeners.push(listener);
    }
    // Said once the listeners are bound: a browser (or a script) that reacts
    // to this line finds the port open.
    output::eprint_line(&format!(
        "Waiting for the browser's redirect to {} (until the login expires) ...",
        session.redirect_uri()
    ));
    let path = url.path().to_owned();
    let session = Arc::new(session.clone());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    let app = Router::new().fallback(move |uri: Uri| {
        let (tx, path, session) = (tx.clone(), path.clone(), Arc::clone(&session));
        async move {
            if uri.path() != path {
                return (StatusCode::NOT_FOUND, "not the login callback").into_response();
            }
            let query = uri.query().unwrap_or_default();
            let has =
                |key: &str| url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == key);
            if !session.is_own_callback(query) || !(has("code") || has("error")) {
                return (
                    StatusCode::BAD_REQUEST,
                    "not this login's callback: the state is missing or foreign",
                )
                    .into_response();
            }
            let _ = tx.try_send(query.to_owned());
            Html(
                "<!doctype html><title>oauth-refresh</title><p>Login received. \
                 You can close this window and return to the terminal.</p>",
            )
            .into_response()
        }
    });
    let stop = CancellationToken::new();
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let server = axum::serve(listener, app.clone())
                .with_graceful_shutdown(stop.clone().cancelled_owned());
            tokio::spawn(async move { server.await })
        })
        .collect();
    let received = tokio::time::timeout(wait, rx.recv()).await;
    stop.cancel();
    for server in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    match received {
        Ok(Some(query)) => {
            let mut callback = url;
            callback.set_query(Some(&query));
            Ok(callback.into())
        }
        _ => Err(CliError::new(
            "the login session expired before the browser came back; start a new login",
        )),
    }
}

fn report_warnings(warnings: &[String]) {
    for warning in warnings {
        output::eprint_line(&format!("warning: {warning}"));
    }
}

/// Lets detached work of the stack finish (none is expected: no refresh
/// runs here).
async fn drain(stack: &RefreshStack) {
    let _ = stack.drain(Duration::from_secs(5)).await;
}

/// The command-line error of a failed login: bad flags and refused
/// options exit 2, the rest 1.
pub(crate) fn cli_error(error: OnboardingError) -> CliError {
    match &error {
        OnboardingError::Unsupported { .. }
        | OnboardingError::Login(
            LoginError::InvalidOption { .. } | LoginError::Configuration { .. },
        ) => CliError::config(error.to_string()),
        OnboardingError::IdentityChanged { .. } => CliError::with(
            "relogin refused (pass --allow-identity-change to re-login the account as the new identity)",
            error,
        ),
        _ => CliError::with("login failed", error),
    }
}
