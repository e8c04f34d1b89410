//! How accounts are shown: a JSON object for scripts, a table row for
//! people. Never a credential.

use chrono::{DateTime, SecondsFormat, Utc};
use refresh_facade::Account;
use serde_json::{Value, json};

/// The JSON object of `accounts list --json` / `show --json` and the HTTP
/// API: `id`, `name`, `platform`, `type`, `status`, `expires_at` (unix
/// seconds or null), `credentials_version`, `error_message`.
pub(crate) fn account_json(account: &Account) -> Value {
    json!({
        "id": account.id.get(),
        "name": account.name,
        "platform": account.platform.as_str(),
        "type": account.account_type.as_str(),
        "status": account.status.as_str(),
        "expires_at": account.expires_at.map(|t| t.timestamp()),
        "credentials_version": account.credentials_version,
        "error_message": account.error_message,
    })
}

/// An expiry for people.
pub(crate) fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "unknown".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// The header of [`table_row`].
pub(crate) const TABLE_HEADER: &str = "ID      NAME                      PLATFORM     TYPE         STATUS    EXPIRES_AT            VERSION";

/// One line of `accounts list`.
pub(crate) fn table_row(account: &Account) -> String {
    format!(
        "{:<7} {:<25} {:<12} {:<12} {:<9} {:<21} {}",
        account.id.get(),
        truncate(&account.name, 25),
        account.platform.as_str(),
        account.account_type.as_str(),
        account.status.as_str(),
        when(account.expires_at),
        account.credentials_version
    )
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}

/// The lines of `accounts show`.
pub(crate) fn details(account: &Account) -> Vec<String> {
    let mut lines = vec![
        format!("id:                  {}", account.id.get()),
        format!("name:                {}", account.name),
        format!("platform:            {}", account.platform.as_str()),
        format!("type:                {}", account.account_type.as_str()),
        format!("status:              {}", account.status.as_str()),
        format!("expires_at:          {}", when(account.expires_at)),
        format!("credentials_version: {}", account.credentials_version),
        format!(
            "error_message:       {}",
            account.error_message.as_deref().unwrap_or("-")
        ),
        format!(
            "proxy:               {}",
            account
                .proxy
                .as_ref()
                .map_or_else(|| "direct".to_owned(), ToString::to_string)
        ),
        format!("priority:            {}", account.priority),
    ];
    let keys: Vec<&str> = account
        .credentials
        .as_map()
        .keys()
        .map(String::as_str)
        .collect();
    lines.push(format!("credential keys:     {}", keys.join(", ")));
    lines
}
