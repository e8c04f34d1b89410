//! Checks shared by the configs' `validate` methods: each names the
//! setting it refuses, so an operator knows what to fix before the first
//! refresh instead of reading a per-refresh error.

use std::ops::RangeInclusive;
use std::time::Duration;

use refresh_core::ConfigError;

/// `value` must be an absolute `http://` or `https://` URL with a host.
pub(crate) fn url(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { field, reason };
    let parsed =
        url::Url::parse(value.trim()).map_err(|e| invalid(format!("not an absolute URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    Ok(())
}

/// `value` must lie within `range`.
pub(crate) fn duration(
    field: &'static str,
    value: Duration,
    range: RangeInclusive<Duration>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        field,
        reason: format!(
            "{value:?} is outside {:?} ..= {:?}",
            range.start(),
            range.end()
        ),
    })
}

/// `value` must lie within `range`.
pub(crate) fn number<T>(
    field: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        field,
        reason: format!("{value} is outside {} ..= {}", range.start(), range.end()),
    })
}

/// A header value that must be printable ASCII (HTTP header rules).
pub(crate) fn header(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        field,
        reason: "a header value must be printable ASCII".to_owned(),
    })
}

/// The range of a provider's token-request timeout: long enough to
/// connect and be answered, so a setting cannot burn every rotation by
/// timing out after the request was sent.
pub(crate) const TOKEN_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(url("x", "https://example.com/token").is_ok());
        assert!(url("x", "http://127.0.0.1:9/t").is_ok());
        for bad in [
            "",
            "not a url",
            "/relative",
            "ftp://example.com",
            "https://",
        ] {
            let error = url("claude.token_url", bad).unwrap_err();
            assert!(error.to_string().contains("claude.token_url"), "{error}");
        }
    }
}
