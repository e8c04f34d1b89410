//! Reading an HTTP `Retry-After` header value.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The longest delay taken from a `Retry-After` value (one day): a garbled
/// or hostile value cannot park an account for years.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The delay a `Retry-After` value asks for (RFC 9110 §10.2.3), read at
/// `now`: delta-seconds (`"120"`), or an HTTP-date in any of the three
/// forms a recipient must accept (IMF-fixdate
/// `"Sun, 06 Nov 1994 08:49:37 GMT"`, RFC 850
/// `"Sunday, 06-Nov-94 08:49:37 GMT"`, asctime
/// `"Sun Nov  6 08:49:37 1994"`). A date in the past is a zero delay. The
/// result is capped at [`MAX_RETRY_AFTER`]. Anything else (blank, negative,
/// unparseable) is `None`, as if the header were absent.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let delay = if value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate: "99999999999999999999" is a long time, not an error.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = http_date(value)?;
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// [`parse_retry_after`] for a `Retry-After` read off a response that may
/// carry its own `Date` header (`server_date`, raw): an HTTP-date
/// `Retry-After` is then read against the server's `Date`, not against the
/// local `now`, so a local clock that runs ahead cannot shorten the wait
/// (nor one behind stretch it) — RFC 9110 §10.2.3 ties the date to the
/// server's clock. Delta-seconds, or a missing or unparseable `Date`, fall
/// back to `now`.
pub fn parse_retry_after_with_date(
    value: &str,
    server_date: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let reference = server_date
        .and_then(|date| http_date(date.trim()))
        .unwrap_or(now);
    parse_retry_after(value, reference)
}

/// An HTTP-date in one of its three forms, always GMT.
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    // RFC 850 (two-digit year) and asctime; both are GMT by definition.
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    for format in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&collapsed, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        // Sun, 06 Nov 1994 08:49:00 GMT
        DateTime::from_timestamp(784_111_740, 0).unwrap()
    }

    #[test]
    fn delta_seconds_and_every_http_date_form() {
        for (value, want) in [
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("0", Some(0)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(37)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(37)),
            ("Sun Nov  6 08:49:37 1994", Some(37)),
            ("Sun, 06 Nov 1994 08:48:00 GMT", Some(0)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("Sun, 06 Nov 1994 25:61:00 GMT", None),
        ] {
            assert_eq!(
                parse_retry_after(value, now()),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_http_date_is_read_against_the_servers_date_not_a_skewed_local_clock() {
        let value = "Sun, 06 Nov 1994 08:49:37 GMT";
        let server = Some("Sun, 06 Nov 1994 08:49:00 GMT");
        let ahead = now() + chrono::Duration::seconds(30);
        let behind = now() - chrono::Duration::seconds(30);
        for local in [now(), ahead, behind] {
            assert_eq!(
                parse_retry_after_with_date(value, server, local),
                Some(Duration::from_secs(37))
            );
        }
        // Delta-seconds ignore both clocks; no (or a garbled) Date falls back to `now`.
        assert_eq!(
            parse_retry_after_with_date("5", server, ahead),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after_with_date(value, None, ahead),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after_with_date(value, Some("yesterday"), now()),
            Some(Duration::from_secs(37))
        );
    }

    #[test]
    fn absurd_values_are_capped_not_overflowed() {
        assert_eq!(
            parse_retry_after("99999999999999999999999", now()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now()),
            Some(MAX_RETRY_AFTER)
        );
    }
}
