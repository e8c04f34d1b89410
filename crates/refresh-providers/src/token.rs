//! What every executor does with a token-endpoint exchange: the claimed
//! refresh token, the response's classification and a sane `expires_in`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use refresh_core::domain::ASSUMED_TOKEN_LIFETIME;
use refresh_core::error::parse_retry_after_with_date;
use refresh_core::{ProviderError, RefreshContext, Secret, TokenGrant};
use tracing::warn;

use crate::http::{Capped, HttpResponse, too_large};

/// The longest `expires_in` taken at face value (a year and a day); longer
/// ones, and zero or negative ones, are replaced by
/// [`ASSUMED_TOKEN_LIFETIME`].
pub(crate) const MAX_EXPIRES_IN: i64 = 366 * 24 * 3600;

/// `ctx.refresh_token`, the one token the executor may present.
///
/// # Errors
/// [`ProviderError::MissingRefreshToken`] when it is blank: nothing is
/// sent then (the account's stored token is never used instead).
pub(crate) fn claimed_refresh_token(ctx: &RefreshContext) -> Result<&Secret, ProviderError> {
    if ctx.refresh_token.is_blank() {
        Err(ProviderError::MissingRefreshToken)
    } else {
        Ok(&ctx.refresh_token)
    }
}

/// Classifies a token-endpoint response: a 2xx body becomes a
/// [`TokenGrant`] (with a sane `expires_in`), anything else the
/// [`ProviderError`] its status, parsed OAuth error code and
/// `Retry-After` (seconds, or an HTTP-date read against the response's
/// `Date` when it has one, else at `now`) say.
///
/// # Errors
/// The classified error; `InvalidResponse` for a 2xx body that is too
/// large, not JSON or has no `access_token`.
pub(crate) fn grant_from(
    response: &HttpResponse,
    now: DateTime<Utc>,
    platform: &'static str,
) -> Result<TokenGrant, ProviderError> {
    if !response.is_success() {
        let retry_after = response
            .retry_after
            .as_deref()
            .and_then(|v| parse_retry_after_with_date(v, response.date.as_deref(), now));
        return Err(ProviderError::from_response(
            response.status,
            response.body_or_empty(),
            retry_after,
        ));
    }
    let body = match &response.body {
        Capped::Complete(body) => body,
        Capped::TooLarge => return Err(too_large("token response")),
    };
    let mut grant = TokenGrant::from_json(body)?;
    grant.expires_in = Some(sane_expires_in(grant.expires_in, platform));
    Ok(grant)
}

/// `expires_in` when it is within `1..=MAX_EXPIRES_IN`, else the assumed
/// lifetime (logged): a zero, negative or absurd lifetime on a 2xx must not
/// throw away tokens the upstream issued (possibly a rotation), nor yield
/// an already-expired token (a refresh storm) or one served for years.
pub(crate) fn sane_expires_in(expires_in: Option<i64>, platform: &'static str) -> i64 {
    match expires_in {
        Some(secs) if (1..=MAX_EXPIRES_IN).contains(&secs) => secs,
        other => {
            let problem = match other {
                None => "missing",
                Some(s) if s <= 0 => "not positive",
                Some(_) => "too large",
            };
            warn!(
                platform,
                problem,
                assumed_secs = ASSUMED_TOKEN_LIFETIME.as_secs(),
                "token response expires_in unusable; assuming a lifetime"
            );
            ASSUMED_TOKEN_LIFETIME.as_secs() as i64
        }
    }
}

/// The time left before `ctx.deadline` minus `reserve`: the budget of the
/// follow-up calls after the token request, so the executor returns the
/// new tokens before the flow aborts it at the deadline.
pub(crate) fn follow_up_deadline(ctx: &RefreshContext, reserve: Duration) -> tokio::time::Instant {
    ctx.deadline
        .checked_sub(reserve)
        .unwrap_or_else(tokio::time::Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_http_date_is_read_against_the_responses_date_on_a_skewed_worker() {
        let response = HttpResponse {
            status: 429,
            retry_after: Some("Sun, 06 Nov 1994 08:49:37 GMT".to_owned()),
            date: Some("Sun, 06 Nov 1994 08:49:00 GMT".to_owned()),
            body: Capped::Complete(Vec::new()),
        };
        // The worker's clock runs 30 s ahead of the server's.
        let ahead = DateTime::from_timestamp(784_111_740 + 30, 0).unwrap();
        match grant_from(&response, ahead, "claude") {
            Err(ProviderError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(37)));
            }
            other => panic!("expected rate_limited, got {:?}", other.err()),
        }
    }
}
