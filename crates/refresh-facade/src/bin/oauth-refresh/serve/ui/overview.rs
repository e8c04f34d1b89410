//! The overview: refreshes per hour (24 h) by outcome and platform,
//! accounts by status, generation claims pending, lock fallbacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{TimeDelta, Utc};
use maud::html;
use refresh_facade::core::ports::{HourlyCount, hour_of};
use refresh_facade::seaorm::entity::claim;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::chart::{self, HOURS};
use super::layout::{Nav, outcome_class, page};
use super::{AppState, Operator, READ_TIMEOUT, html_response};

type Shared = Arc<AppState>;

/// A count, or what went wrong reading it: the failure's kind only (the
/// database's own text goes to the log, not the page).
fn shown(result: Result<Result<u64, sea_orm::DbErr>, tokio::time::error::Elapsed>) -> String {
    match result {
        Ok(Ok(n)) => n.to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "counting claims for the overview failed");
            let kind = match e {
                sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => "unavailable",
                _ => "query failed",
            };
            format!("unavailable ({kind})")
        }
        Err(_) => "unavailable (timeout)".to_owned(),
    }
}

/// Runs per (platform, outcome) over all hours.
fn totals(rows: &[HourlyCount]) -> BTreeMap<(String, String), u64> {
    let mut totals = BTreeMap::new();
    for r in rows {
        *totals
            .entry((r.platform.as_str().to_owned(), r.outcome.clone()))
            .or_insert(0) += r.count;
    }
    totals
}

pub(super) async fn show(State(state): State<Shared>, operator: Operator) -> Response {
    let stack = &state.stack;
    let now = Utc::now();
    let first = hour_of(now) - TimeDelta::hours(HOURS - 1);
    let counts = tokio::time::timeout(READ_TIMEOUT, stack.catalog().count_by_status(None)).await;
    let hourly = tokio::time::timeout(READ_TIMEOUT, state.ui.events.hourly(first)).await;
    let conn = stack.database().connection();
    let answered = tokio::time::timeout(
        READ_TIMEOUT,
        claim::Entity::find()
            .filter(claim::Column::ExpiresAt.is_null())
            .count(conn),
    )
    .await;
    let open = tokio::time::timeout(
        READ_TIMEOUT,
        claim::Entity::find()
            .filter(claim::Column::ExpiresAt.is_not_null())
            .count(conn),
    )
    .await;
    let recorder = &state.ui.recorder;
    let body = html! {
        h1 { "Overview" }
        h2 { "Accounts by status" }
        @match &counts {
            Ok(Ok(c)) => div.cards {
                a.card href="/accounts?status=active" { div.n { (c.active) } div { "active" } }
                a.card href="/accounts?status=error" { div.n.status-error { (c.error) } div { "error (need a re-login or a look)" } }
                a.card href="/accounts?status=disabled" { div.n { (c.disabled) } div { "disabled" } }
            },
            Ok(Err(e)) => p.notice.bad role="alert" { "Counting accounts failed: " (e.kind().to_string()) },
            Err(_) => p.notice.bad role="alert" { "Counting accounts timed out." },
        }
        h2 { "Refreshes per hour, last 24 hours (UTC)" }
        @match &hourly {
            Ok(Ok(rows)) => {
                (chart::svg(&chart::bars(rows, first)))
                @let totals = totals(rows);
                @if totals.is_empty() {
                    p.muted { "No refresh in the last 24 hours." }
                } @else {
                    div.table-wrap {
                        table {
                            caption.muted { "Refreshes in the last 24 hours by platform and outcome" }
                            thead { tr { th scope="col" { "Platform" } th scope="col" { "Outcome" } th scope="col" { "Runs" } } }
                            tbody {
                                @for ((platform, outcome), n) in &totals {
                                    tr {
                                        td { (platform) }
                                        td class=(outcome_class(outcome)) { (outcome) }
                                        td.num { (n) }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            Ok(Err(e)) => p.notice.bad role="alert" { "Reading the history failed: " (e.kind().to_string()) },
            Err(_) => p.notice.bad role="alert" { "Reading the history timed out." },
        }
        h2 { "Refresh machinery" }
        div.cards {
            div.card { div.n { (shown(answered)) } div { "recovery records pending (answered claims)" } }
            div.card { div.n { (shown(open)) } div { "claims in flight or cooling down" } }
            div.card { div.n { (recorder.lock_fallbacks()) } div { "lock layers unavailable (this process, since start)" } }
            div.card { div.n { (recorder.dropped()) } div { "refresh events not recorded (queue full)" } }
        }
    };
    let nav = Nav {
        csrf: &operator.csrf,
        current: "overview",
    };
    html_response(StatusCode::OK, page("Overview", Some(&nav), &body))
}
