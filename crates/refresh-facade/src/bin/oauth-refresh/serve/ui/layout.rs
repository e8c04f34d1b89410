//! The page shell every page shares, and small pieces of markup: times
//! relative to now, outcome and status classes. maud escapes every value
//! it interpolates.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};

/// What the header shows for a logged-in operator.
pub(super) struct Nav<'a> {
    /// The session's CSRF token (for the logout form).
    pub(super) csrf: &'a str,
    /// The current section (`overview`, `accounts`).
    pub(super) current: &'a str,
}

/// A whole page.
pub(super) fn page(title: &str, nav: Option<&Nav<'_>>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · oauth-refresh" }
                link rel="stylesheet" href="/ui/style.css";
                script src="/ui/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "oauth-refresh" }
                    @if let Some(nav) = nav {
                        nav aria-label="Sections" {
                            (link("/", "Overview", nav.current == "overview"))
                            (link("/accounts", "Accounts", nav.current == "accounts"))
                        }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(nav.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

fn link(href: &str, text: &str, current: bool) -> Markup {
    html! {
        @if current {
            a href=(href) aria-current="page" { (text) }
        } @else {
            a href=(href) { (text) }
        }
    }
}

/// `seconds` from now in words: `in 5 min`, `3 h ago` (as `app.js`).
pub(super) fn phrase(seconds: i64) -> String {
    let abs = seconds.unsigned_abs();
    let (n, unit) = match abs {
        0..60 => (abs, "s"),
        60..3600 => ((abs + 30) / 60, "min"),
        3600..172_800 => ((abs + 1800) / 3600, "h"),
        _ => ((abs + 43_200) / 86_400, "d"),
    };
    if seconds >= 0 {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

/// A `<time>` the script keeps relative to now; its exact value in the
/// tooltip.
pub(super) fn relative(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        None => html! { span.muted { "unknown" } },
        Some(at) => {
            let exact = at.to_rfc3339_opts(SecondsFormat::Secs, true);
            html! {
                time datetime=(exact) title=(exact) data-rel {
                    (phrase((at - now).num_seconds()))
                }
            }
        }
    }
}

/// The CSS class of a refresh outcome.
pub(super) fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "refreshed" | "recovered" => "outcome-ok",
        "still_fresh" | "held_elsewhere" => "outcome-held",
        _ => "outcome-fail",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_match_the_script() {
        assert_eq!(phrase(0), "in 0 s");
        assert_eq!(phrase(59), "in 59 s");
        assert_eq!(phrase(-90), "2 min ago");
        assert_eq!(phrase(3 * 3600), "in 3 h");
        assert_eq!(phrase(-5 * 86_400), "5 d ago");
    }

    #[test]
    fn values_are_escaped() {
        let body = html! { p { ("<script>alert(1)</script>") } };
        let text = page("<b>", None, &body).into_string();
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!text.contains("<script>alert"));
        assert!(text.contains("&lt;b&gt; · oauth-refresh"));
    }
}
