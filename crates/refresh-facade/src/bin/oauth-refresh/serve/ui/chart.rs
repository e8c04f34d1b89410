//! The overview's chart: refreshes per hour over 24 h as stacked bars
//! (succeeded, nothing to do, failed), server-side SVG with a text title
//! per bar. Colours come from the stylesheet's classes (no inline style).

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use maud::{Markup, html};
use refresh_facade::core::ports::HourlyCount;

/// Hours shown.
pub(super) const HOURS: i64 = 24;

const WIDTH: i64 = 720;
const HEIGHT: i64 = 200;
const LEFT: i64 = 40;
const BOTTOM: i64 = 22;
const TOP: i64 = 10;

/// What one hour's bar stacks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bar {
    pub(super) ok: u64,
    pub(super) held: u64,
    pub(super) fail: u64,
}

impl Bar {
    fn total(self) -> u64 {
        self.ok + self.held + self.fail
    }
}

/// The bars of the `HOURS` hours ending with the one `now` is in.
pub(super) fn bars(counts: &[HourlyCount], first: DateTime<Utc>) -> Vec<(DateTime<Utc>, Bar)> {
    let mut bars: Vec<(DateTime<Utc>, Bar)> = (0..HOURS)
        .map(|h| (first + TimeDelta::hours(h), Bar::default()))
        .collect();
    for c in counts {
        let index = (c.hour - first).num_hours();
        let Some((_, bar)) = usize::try_from(index).ok().and_then(|i| bars.get_mut(i)) else {
            continue;
        };
        match c.outcome.as_str() {
            "refreshed" | "recovered" => bar.ok += c.count,
            "still_fresh" | "held_elsewhere" => bar.held += c.count,
            _ => bar.fail += c.count,
        }
    }
    bars
}

/// The SVG.
pub(super) fn svg(bars: &[(DateTime<Utc>, Bar)]) -> Markup {
    let max = bars
        .iter()
        .map(|(_, b)| b.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / HOURS;
    let scale = |n: u64| {
        i64::try_from(n).unwrap_or(i64::MAX).saturating_mul(plot_h)
            / i64::try_from(max).unwrap_or(1)
    };
    let total: u64 = bars.iter().map(|(_, b)| b.total()).sum();
    let label = format!(
        "Refreshes per hour over the last 24 hours: {total} in all, at most {max} in one hour"
    );
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH) y2=(TOP + plot_h) {}
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
            text x="2" y=(TOP + 8) { (max) }
            text x="2" y=(TOP + plot_h) { "0" }
            @for (i, (hour, bar)) in bars.iter().enumerate() {
                @let x = LEFT + 2 + i64::try_from(i).unwrap_or(0) * slot;
                @let w = slot - 4;
                @let (ok, held, fail) = (scale(bar.ok), scale(bar.held), scale(bar.fail));
                @let base = TOP + plot_h;
                g {
                    title { (hour.format("%H:00 UTC")) ": " (bar.ok) " refreshed, " (bar.held) " nothing to do, " (bar.fail) " failed" }
                    @if ok > 0 { rect.ok x=(x) y=(base - ok) width=(w) height=(ok) {} }
                    @if held > 0 { rect.held x=(x) y=(base - ok - held) width=(w) height=(held) {} }
                    @if fail > 0 { rect.fail x=(x) y=(base - ok - held - fail) width=(w) height=(fail) {} }
                }
                @if hour.hour() % 3 == 0 {
                    text x=(x) y=(HEIGHT - 6) { (hour.format("%H:00")) }
                }
            }
        }
        p.legend aria-hidden="true" {
            span { i.ok {} "refreshed" }
            span { i.held {} "nothing to do / held elsewhere" }
            span { i.fail {} "failed" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refresh_facade::Platform;

    #[test]
    fn counts_land_in_their_hour_by_outcome_class() {
        let first = DateTime::from_timestamp(1_900_000_800, 0).unwrap();
        let count = |h: i64, outcome: &str, n| HourlyCount {
            hour: first + TimeDelta::hours(h),
            platform: Platform::Gemini,
            outcome: outcome.into(),
            count: n,
        };
        let bars = bars(
            &[
                count(0, "refreshed", 2),
                count(0, "recovered", 1),
                count(23, "upstream", 4),
                count(23, "held_elsewhere", 1),
                count(24, "refreshed", 9),
                count(-1, "refreshed", 9),
            ],
            first,
        );
        assert_eq!(bars.len(), 24);
        assert_eq!(
            bars[0].1,
            Bar {
                ok: 3,
                held: 0,
                fail: 0
            }
        );
        assert_eq!(
            bars[23].1,
            Bar {
                ok: 0,
                held: 1,
                fail: 4
            }
        );
        let svg = svg(&bars).into_string();
        assert!(svg.contains("8 in all"), "{svg}");
        assert!(!svg.contains("style="));
    }
}
