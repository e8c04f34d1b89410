//! `token ID` and `refresh ID [--force]`.

use refresh_facade::{AccountId, RefreshOutcome, TokenError};

use crate::config::Loaded;
use crate::error::CliError;
use crate::keys::Missing;
use crate::output;
use crate::view;

/// Prints a currently valid access token, and nothing else, on stdout.
pub(crate) async fn token(loaded: &Loaded, id: i64) -> Result<(), CliError> {
    let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
    let token = match stack.tokens().access_token_by_id(AccountId(id)).await {
        Ok(token) => token,
        Err(error) => {
            crate::stack::settle(&stack, loaded).await?;
            return Err(token_error(id, error));
        }
    };
    output::print_line(token.token.expose());
    // A refresh whose answer the database refused goes on detached (it
    // holds the only copy of the rotation): wait for it before exiting.
    crate::stack::settle(&stack, loaded).await
}

/// Maps a refresh error to one line.
fn refresh_error(id: i64, error: TokenError) -> CliError {
    match error {
        TokenError::NotEligible {
            platform,
            account_type,
            ..
        } => CliError::new(format!(
            "account {id} ({platform} {}) is not refreshable: its token is served as stored",
            account_type.as_str()
        )),
        TokenError::Refresh { source, .. } => {
            CliError::with(format!("refresh of account {id} failed"), source)
        }
        other => token_error(id, other),
    }
}

/// Maps a token error to one line.
fn token_error(id: i64, error: TokenError) -> CliError {
    match error {
        TokenError::UnknownAccount { .. } => CliError::new(format!("account {id} not found")),
        TokenError::Inactive { status, .. } => CliError::new(format!(
            "account {id} is {status}, not active: it is neither served nor refreshed (`oauth-refresh accounts set-status {id} active` serves it again)"
        )),
        other => CliError::with(format!("no valid token for account {id}"), other),
    }
}

/// Refreshes an account now if due (or always, with `force`).
pub(crate) async fn refresh(loaded: &Loaded, id: i64, force: bool) -> Result<(), CliError> {
    let (stack, _) = crate::stack::build(loaded, false, Missing::Fail, None).await?;
    let outcome = match stack.refresh(AccountId(id), force).await {
        Ok(outcome) => outcome,
        Err(error) => {
            crate::stack::settle(&stack, loaded).await?;
            return Err(refresh_error(id, error));
        }
    };
    let line = match &outcome {
        RefreshOutcome::Refreshed { account, recovered } => format!(
            "account {id}: refreshed{} (version {}, expires {})",
            if *recovered {
                " from a stored upstream answer"
            } else {
                ""
            },
            account.credentials_version,
            view::when(account.expires_at)
        ),
        RefreshOutcome::StillFresh { account } => format!(
            "account {id}: still fresh (version {}, expires {}); --force refreshes anyway",
            account.credentials_version,
            view::when(account.expires_at)
        ),
        RefreshOutcome::HeldElsewhere => {
            format!("account {id}: another instance is refreshing it right now")
        }
    };
    output::print_line(&line);
    crate::stack::settle(&stack, loaded).await
}
