//! [`ClaudeExecutor`].

use async_trait::async_trait;
use refresh_core::domain::keys;
use refresh_core::{
    Account, AccountType, Credentials, ExpiryRule, GrantFields, Platform, ProviderError,
    RefreshContext, RefreshExecutor, Secret,
};
use serde::Serialize;
use tracing::debug;

use super::ClaudeConfig;
use crate::http::{HttpClients, Outgoing, RequestBody};
use crate::token::{claimed_refresh_token, grant_from};

/// Claude's refresh executor (REFERENCE.md §6.1).
#[derive(Debug)]
pub struct ClaudeExecutor {
    config: ClaudeConfig,
    http: HttpClients,
}

/// The JSON body, in the order Claude Code sends it.
#[derive(Serialize)]
struct RefreshBody<'a> {
    grant_type: &'static str,
    refresh_token: &'a str,
    client_id: &'a str,
}

impl ClaudeExecutor {
    /// An executor with `config` over `http`.
    pub fn new(config: ClaudeConfig, http: HttpClients) -> Self {
        Self { config, http }
    }

    /// Whether a setup-token account is of the refreshable kind (issued
    /// since July 2026: it carries a refresh token and an expiry). An
    /// expiry that is present but unreadable (milliseconds, garbage) counts
    /// as present: serving such a token statically forever would hide the
    /// problem, while a refresh writes a canonical expiry (invariant 10).
    fn refreshable_setup_token(account: &Account) -> bool {
        account.credentials.refresh_token().is_some()
            && !matches!(account.credentials.expires_at(), Ok(None))
    }
}

#[async_trait]
impl RefreshExecutor for ClaudeExecutor {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    fn can_refresh(&self, account: &Account) -> bool {
        account.platform == Platform::Anthropic
            && match account.account_type {
                AccountType::OAuth => true,
                AccountType::SetupToken => Self::refreshable_setup_token(account),
                _ => false,
            }
    }

    fn static_token(&self, account: &Account) -> Option<Secret> {
        (account.platform == Platform::Anthropic
            && account.account_type == AccountType::SetupToken
            && !Self::refreshable_setup_token(account))
        .then(|| account.credentials.access_token())
        .flatten()
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let refresh_token = claimed_refresh_token(ctx)?;
        let body = serde_json::to_vec(&RefreshBody {
            grant_type: "refresh_token",
            refresh_token: refresh_token.expose(),
            client_id: &self.config.client_id,
        })
        .map_err(|_| ProviderError::Configuration {
            reason: "the token request body cannot be encoded".to_owned(),
        })?;
        let request = Outgoing::post(
            &self.config.token_url,
            RequestBody::Json(body),
            self.config.timeout,
        )
        .header("accept", self.config.accept.as_str())
        .header("user-agent", self.config.user_agent.as_str())
        .via(account.proxy.as_ref());
        let response = self.http.send(request, ctx.deadline).await?;
        let now = ctx.now();
        let grant = grant_from(&response, now, "anthropic")?;
        let issued = grant.to_credentials(
            now,
            ExpiryRule::EXACT,
            GrantFields {
                write_expires_in: true,
                write_type_and_scope: true,
            },
        );
        debug!(
            account_id = %account.id,
            platform = "anthropic",
            rotated = issued.get(keys::REFRESH_TOKEN).is_some(),
            "token refreshed"
        );
        Ok(issued.merged_over(&account.credentials))
    }
}
