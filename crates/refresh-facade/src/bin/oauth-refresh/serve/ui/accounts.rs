//! The accounts table, one account's page, and "refresh now" ("re-login"
//! is [`super::relogin`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use refresh_facade::core::ports::{DueCursor, RefreshEvent};
use refresh_facade::{
    Account, AccountFilter, AccountId, AccountStatus, Platform, RefreshOutcome, TokenError,
};

use super::layout::{Nav, outcome_class, page, relative};
use super::{AppState, Operator, bounded, csrf_refused, field, form, html_response, query};

type Shared = Arc<AppState>;

/// Events shown on an account's page.
const RECENT_EVENTS: usize = 25;
/// How long "refresh now" waits for its event to be stored before showing
/// the page again.
const EVENT_FLUSH: Duration = Duration::from_secs(2);
/// The statuses, in filter order.
const STATUSES: [AccountStatus; 3] = [
    AccountStatus::Active,
    AccountStatus::Disabled,
    AccountStatus::Error,
];
/// The built-in platforms, in filter order.
const PLATFORMS: [&str; 4] = ["anthropic", "openai", "gemini", "antigravity"];

/// What the accounts page was asked for.
#[derive(Debug, Default)]
struct Listing {
    platform: Option<Platform>,
    status: Option<AccountStatus>,
    by_expiry: bool,
    after: Option<String>,
    bad: Vec<&'static str>,
}

impl Listing {
    fn parse(raw: Option<&str>) -> Self {
        let mut listing = Self::default();
        for (key, value) in query(raw) {
            match key.as_str() {
                "platform" if !value.is_empty() => match value.parse() {
                    Ok(p) => listing.platform = Some(p),
                    Err(_) => listing.bad.push("platform"),
                },
                "status" if !value.is_empty() => match value.parse() {
                    Ok(s) => listing.status = Some(s),
                    Err(_) => listing.bad.push("status"),
                },
                "sort" => listing.by_expiry = value == "expiry",
                "after" if !value.is_empty() => listing.after = Some(value),
                _ => {}
            }
        }
        listing
    }

    /// The link to this listing's page after `cursor` (the first page
    /// without one).
    fn link(&self, cursor: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(p) = &self.platform {
            q.append_pair("platform", p.as_str());
        }
        if let Some(s) = self.status {
            q.append_pair("status", s.as_str());
        }
        if self.by_expiry {
            q.append_pair("sort", "expiry");
        }
        if let Some(cursor) = cursor {
            q.append_pair("after", cursor);
        }
        format!("/accounts?{}", q.finish())
    }
}

/// A page of rows: readable accounts and unreadable ids, and the cursor of
/// the next page.
struct Rows {
    accounts: Vec<Account>,
    unreadable: Vec<AccountId>,
    next: Option<String>,
}

fn due_cursor(text: &str) -> Option<DueCursor> {
    let (at, id) = text.split_once('_')?;
    let expires_at = if at == "none" {
        None
    } else {
        Some(DateTime::from_timestamp_millis(at.parse().ok()?)?)
    };
    Some(DueCursor {
        expires_at,
        id: AccountId(id.parse().ok()?),
    })
}

fn due_cursor_text(cursor: DueCursor) -> String {
    let at = cursor
        .expires_at
        .map_or_else(|| "none".to_owned(), |t| t.timestamp_millis().to_string());
    format!("{at}_{}", cursor.id.get())
}

async fn rows(state: &AppState, listing: &Listing) -> Result<Rows, String> {
    let limit = state.ui.config.page_size();
    let stack = &state.stack;
    if listing.by_expiry {
        return by_expiry(state, listing, limit).await;
    }
    let filter = AccountFilter {
        platform: listing.platform.clone(),
        status: listing.status,
    };
    let after = listing
        .after
        .as_deref()
        .and_then(|a| a.parse().ok())
        .map(AccountId);
    let page = bounded(stack.catalog().list(&filter, after, limit))
        .await
        .map_err(|e| format!("listing accounts failed: {e}"))?;
    Ok(Rows {
        accounts: page.accounts,
        unreadable: page.corrupt.iter().map(|c| c.id).collect(),
        next: page.next.map(|id| id.get().to_string()),
    })
}

/// Rounds of [`by_expiry`] per page: past them the page shows what it
/// found and a Next link, so a rare platform among many accounts costs
/// bounded work per request.
const EXPIRY_ROUNDS: usize = 20;

/// Active accounts by (expiry, id), unknown expiry first: the repository's
/// due listing with a horizon a century away. The catalog's filtered
/// listing orders by id only, so a platform filter reads due pages until
/// this page holds `limit` matching accounts, the listing ends, or
/// [`EXPIRY_ROUNDS`] pages were read.
async fn by_expiry(state: &AppState, listing: &Listing, limit: usize) -> Result<Rows, String> {
    let horizon = Utc::now() + TimeDelta::days(36_500);
    let filter = AccountFilter {
        platform: listing.platform.clone(),
        status: None,
    };
    let mut after = listing.after.as_deref().and_then(due_cursor);
    let mut rows = Rows {
        accounts: Vec::new(),
        unreadable: Vec::new(),
        next: None,
    };
    for _ in 0..EXPIRY_ROUNDS {
        let page = bounded(state.stack.repository().list_due(horizon, after, limit))
            .await
            .map_err(|e| format!("listing accounts failed: {e}"))?;
        // Corrupt rows have no readable platform: shown under any filter.
        rows.unreadable.extend(page.corrupt.iter().map(|c| c.id));
        let room = limit - rows.accounts.len();
        let mut matching: Vec<Account> = page
            .accounts
            .into_iter()
            .filter(|a| filter.matches(a))
            .collect();
        if matching.len() > room {
            // Full: the next page starts after the last account shown.
            matching.truncate(room);
            rows.next = matching.last().map(|a| {
                due_cursor_text(DueCursor {
                    expires_at: a.expires_at,
                    id: a.id,
                })
            });
            rows.accounts.extend(matching);
            return Ok(rows);
        }
        rows.accounts.extend(matching);
        after = page.next;
        if after.is_none() || rows.accounts.len() == limit {
            break;
        }
    }
    rows.next = after.map(due_cursor_text);
    Ok(rows)
}

fn status_class(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "status-active",
        AccountStatus::Disabled => "status-disabled",
        AccountStatus::Error => "status-error",
    }
}

fn filters(listing: &Listing) -> Markup {
    let platform = listing.platform.as_ref().map(Platform::as_str);
    html! {
        form.filters method="get" action="/accounts" role="search" aria-label="Filter accounts" {
            label {
                "Platform"
                select name="platform" {
                    option value="" selected[platform.is_none()] { "any" }
                    @for p in PLATFORMS {
                        option value=(p) selected[platform == Some(p)] { (p) }
                    }
                    @if let Some(p) = platform.filter(|p| !PLATFORMS.contains(p)) {
                        option value=(p) selected { (p) }
                    }
                }
            }
            label {
                "Status"
                select name="status" {
                    option value="" selected[listing.status.is_none()] { "any" }
                    @for s in STATUSES {
                        option value=(s.as_str()) selected[listing.status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label {
                "Order"
                select name="sort" {
                    option value="id" selected[!listing.by_expiry] { "by id" }
                    option value="expiry" selected[listing.by_expiry] { "by expiry (active)" }
                }
            }
            button type="submit" { "Apply" }
        }
    }
}

fn last_event(event: Option<&RefreshEvent>, now: DateTime<Utc>) -> Markup {
    match event {
        None => html! { span.muted { "none yet" } },
        Some(e) => html! {
            span class=(outcome_class(&e.outcome)) { (e.outcome) }
            " "
            (relative(Some(e.at), now))
        },
    }
}

pub(super) async fn list(
    State(state): State<Shared>,
    operator: Operator,
    RawQuery(raw): RawQuery,
) -> Response {
    let listing = Listing::parse(raw.as_deref());
    let now = Utc::now();
    let rows = rows(&state, &listing).await;
    // The last event of every row in one call (an unreadable history
    // leaves the column empty).
    let mut latest: HashMap<AccountId, RefreshEvent> = HashMap::new();
    if let Ok(rows) = &rows {
        let ids: Vec<AccountId> = rows.accounts.iter().map(|a| a.id).collect();
        if let Ok(events) = bounded(state.ui.events.latest(&ids)).await {
            latest.extend(events.into_iter().map(|e| (e.account_id, e)));
        }
    }
    let body = html! {
        h1 { "Accounts" }
        (filters(&listing))
        @if !listing.bad.is_empty() {
            p.notice.bad role="alert" { "Ignored an unknown " (listing.bad.join(" and ")) "." }
        }
        @if listing.by_expiry && listing.status.is_some_and(|s| s != AccountStatus::Active) {
            p.notice role="status" { "The expiry order lists active accounts only." }
        }
        @match &rows {
            Err(message) => p.notice.bad role="alert" { (message) },
            Ok(rows) => {
                div.table-wrap {
                    table {
                        caption.muted { (rows.accounts.len()) " accounts on this page" }
                        thead {
                            tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Platform" }
                                th scope="col" .hide-narrow { "Type" }
                                th scope="col" { "Status" }
                                th scope="col" { "Expires" }
                                th scope="col" .hide-narrow { "Version" }
                                th scope="col" { "Last refresh" }
                                th scope="col" { "Error" }
                            }
                        }
                        tbody {
                            @for account in &rows.accounts {
                                tr data-account=(account.id.get()) {
                                    td { a href={ "/accounts/" (account.id.get()) } { (account.name) } }
                                    td { (account.platform.as_str()) }
                                    td .hide-narrow { (account.account_type.as_str()) }
                                    td class=(status_class(account.status)) { (account.status.as_str()) }
                                    td { (relative(account.expires_at, now)) }
                                    td.num .hide-narrow { (account.credentials_version) }
                                    td { (last_event(latest.get(&account.id), now)) }
                                    td.err { (account.error_message.as_deref().unwrap_or("")) }
                                }
                            }
                            @for id in &rows.unreadable {
                                tr {
                                    td { a href={ "/accounts/" (id.get()) } { "#" (id.get()) } }
                                    td colspan="7" .err { "unreadable row (see the logs)" }
                                }
                            }
                        }
                    }
                }
                nav.pager aria-label="Pages" {
                    @if listing.after.is_some() {
                        a href=(listing.link(None)) { "« First page" }
                    }
                    @if let Some(next) = &rows.next {
                        a href=(listing.link(Some(next))) rel="next" { "Next page »" }
                    }
                }
            }
        }
    };
    let nav = Nav {
        csrf: &operator.csrf,
        current: "accounts",
    };
    html_response(StatusCode::OK, page("Accounts", Some(&nav), &body))
}

/// The notice after "refresh now", from a fixed list.
fn notice(raw: Option<&str>) -> Option<(bool, String)> {
    let pairs = query(raw);
    let text = match field(&pairs, "notice")? {
        "refreshed" => "Refreshed: new credentials are stored.".to_owned(),
        "relogged_in" => "Re-logged in: the login's credentials are stored.".to_owned(),
        "relogged_in_warnings" => {
            "Re-logged in: the login's credentials are stored, with warnings (such as an upstream identity change, as allowed); see serve's log."
                .to_owned()
        }
        "still_fresh" => "Not refreshed: the stored credentials are current.".to_owned(),
        "held_elsewhere" => "Another process is refreshing this account right now.".to_owned(),
        "not_refreshable" => {
            "This account cannot be refreshed (no refresh token or provider).".to_owned()
        }
        "failed" => {
            let stage: String = field(&pairs, "stage")
                .unwrap_or("unknown")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(32)
                .collect();
            return Some((
                true,
                format!("The refresh failed (stage: {stage}). See the events below and the logs."),
            ));
        }
        _ => return None,
    };
    Some((false, text))
}

pub(super) async fn show(
    State(state): State<Shared>,
    operator: Operator,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let nav = Nav {
        csrf: &operator.csrf,
        current: "accounts",
    };
    let Ok(id) = id.parse::<i64>().map(AccountId) else {
        return not_found(&nav);
    };
    let account = match bounded(state.stack.repository().get(id)).await {
        Ok(Some(account)) => account,
        Ok(None) => return not_found(&nav),
        Err(e) => {
            let body = html! { h1 { "Account " (id.get()) } p.notice.bad role="alert" { "Reading the account failed: " (e) } };
            return html_response(
                StatusCode::SERVICE_UNAVAILABLE,
                page("Account", Some(&nav), &body),
            );
        }
    };
    let events = bounded(state.ui.events.recent(id, RECENT_EVENTS)).await;
    let now = Utc::now();
    let notice = notice(raw.as_deref());
    let body = html! {
        p { a href="/accounts" { "« Accounts" } }
        h1 { (account.name) }
        @if let Some((bad, text)) = &notice {
            @if *bad {
                p.notice.bad role="alert" { (text) }
            } @else {
                p.notice role="status" { (text) }
            }
        }
        dl.facts {
            dt { "ID" } dd { (account.id.get()) }
            dt { "Platform" } dd { (account.platform.as_str()) }
            dt { "Type" } dd { (account.account_type.as_str()) }
            dt { "Status" } dd class=(status_class(account.status)) { (account.status.as_str()) }
            dt { "Expires" } dd { (relative(account.expires_at, now)) }
            dt { "Credentials version" } dd { (account.credentials_version) }
            dt { "Error" } dd.err { (account.error_message.as_deref().unwrap_or("none")) }
            dt { "Proxy" } dd { (if account.proxy.is_some() { "configured" } else { "direct" }) }
            dt { "Priority" } dd { (account.priority) }
        }
        div.actions {
            form method="post" action={ "/accounts/" (account.id.get()) "/refresh" } {
                input type="hidden" name="csrf" value=(operator.csrf);
                button.primary type="submit" { "Refresh now" }
            }
            form method="post" action={ "/accounts/" (account.id.get()) "/relogin" } {
                input type="hidden" name="csrf" value=(operator.csrf);
                button type="submit" { "Re-login" }
            }
        }
        h2 #events { "Recent refreshes" }
        @match &events {
            Err(e) => p.notice.bad role="alert" { "Reading the history failed: " (e) },
            Ok(events) if events.is_empty() => p.muted { "No refresh recorded yet." },
            Ok(events) => {
                div.table-wrap {
                    table #event-table {
                        caption.muted { "The newest " (events.len()) " refreshes, newest first" }
                        thead {
                            tr {
                                th scope="col" { "When" }
                                th scope="col" { "Outcome" }
                                th scope="col" { "Duration" }
                                th scope="col" { "Lock" }
                                th scope="col" { "Attempts" }
                            }
                        }
                        tbody {
                            @for e in events {
                                tr {
                                    td { (relative(Some(e.at), now)) }
                                    td class=(outcome_class(&e.outcome)) { (e.outcome) }
                                    td.num { (e.duration.as_millis()) " ms" }
                                    td { (e.lock_layer.as_deref().unwrap_or("—")) }
                                    td.num { (e.attempts) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page(&account.name, Some(&nav), &body))
}

fn not_found(nav: &Nav<'_>) -> Response {
    let body = html! { h1 { "No such account" } p { a href="/accounts" { "« Accounts" } } };
    html_response(StatusCode::NOT_FOUND, page("Not found", Some(nav), &body))
}

pub(super) async fn refresh_now(
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
    let back = |query: &str| {
        Redirect::to(&format!("/accounts/{}?{query}#events", id.get())).into_response()
    };
    tracing::info!(account_id = %id, "refresh requested on the status page");
    // The library's refresh by id: status, eligibility, force window and
    // local invalidation in one place.
    let result = state.stack.refresh(id, true).await;
    // The page shows the run's event: wait (bounded) for it to be stored.
    state.ui.recorder.flush(EVENT_FLUSH).await;
    match result {
        Ok(RefreshOutcome::Refreshed { .. }) => back("notice=refreshed"),
        Ok(RefreshOutcome::StillFresh { .. }) => back("notice=still_fresh"),
        Ok(RefreshOutcome::HeldElsewhere) => back("notice=held_elsewhere"),
        Err(TokenError::UnknownAccount { .. }) => StatusCode::NOT_FOUND.into_response(),
        Err(
            TokenError::Inactive { .. }
            | TokenError::NotEligible { .. }
            | TokenError::UnsupportedPlatform { .. },
        ) => back("notice=not_refreshable"),
        Err(TokenError::Refresh { source, .. }) => {
            back(&format!("notice=failed&stage={}", source.stage().as_str()))
        }
        Err(TokenError::Storage { source, .. }) => {
            back(&format!("notice=failed&stage=storage_{}", source.kind()))
        }
        Err(_) => back("notice=failed&stage=token"),
    }
}
