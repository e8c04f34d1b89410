//! [`AntigravityExecutor`].

use std::time::Duration;

use async_trait::async_trait;
use refresh_core::domain::keys;
use refresh_core::{
    Account, AccountType, Credentials, Platform, ProviderError, RefreshContext, RefreshExecutor,
    Secret,
};
use tracing::{debug, warn};

use super::{AntigravityConfig, issued, load_project, token_request};
use crate::code_assist::{Caller, apply_project};
use crate::http::HttpClients;
use crate::token::{claimed_refresh_token, follow_up_deadline, grant_from};

/// Antigravity's smallest refresh window (REFERENCE.md §3.1).
const MIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Antigravity's refresh executor (REFERENCE.md §6.4, §7.2).
#[derive(Debug)]
pub struct AntigravityExecutor {
    config: AntigravityConfig,
    user_agent: String,
    http: HttpClients,
}

impl AntigravityExecutor {
    /// An executor with `config` over `http`.
    pub fn new(config: AntigravityConfig, http: HttpClients) -> Self {
        Self {
            user_agent: config.code_assist_user_agent(),
            config,
            http,
        }
    }
}

#[async_trait]
impl RefreshExecutor for AntigravityExecutor {
    fn platform(&self) -> Platform {
        Platform::Antigravity
    }

    fn rotates_refresh_token(&self) -> bool {
        false
    }

    fn min_window(&self) -> Duration {
        MIN_WINDOW
    }

    fn static_token(&self, account: &Account) -> Option<Secret> {
        (account.platform == Platform::Antigravity && account.account_type == AccountType::Upstream)
            .then(|| account.credentials.secret(keys::API_KEY))
            .flatten()
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let refresh_token = claimed_refresh_token(ctx)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.config.client_id)
            .append_pair("client_secret", self.config.client_secret.expose())
            .append_pair("refresh_token", refresh_token.expose())
            .append_pair("grant_type", "refresh_token")
            .finish();
        let request = token_request(&self.config, form, account.proxy.as_ref());
        let response = self.http.send(request, ctx.deadline).await?;
        let now = ctx.now();
        let grant = grant_from(&response, now, "antigravity")?;
        let mut issued = issued(&grant, now);
        let Some(access_token) = &grant.access_token else {
            // A rotation without an access token: stored, no follow-up.
            return Ok(issued.merged_over(&account.credentials));
        };
        // §7.2 on every refresh, with the new access token.
        let caller = Caller {
            http: &self.http,
            proxy: account.proxy.as_ref(),
            access_token,
            user_agent: Some(self.user_agent.as_str()),
            call_timeout: self.config.discovery.call_timeout,
            deadline: follow_up_deadline(ctx, self.config.discovery.reserve),
        };
        let project = match load_project(&self.config, &caller).await {
            Ok(project) => Some(project),
            Err(reason) => {
                warn!(
                    account_id = %account.id,
                    platform = "antigravity",
                    %reason,
                    "project load failed; tokens kept, stored project_id kept"
                );
                None
            }
        };
        let pending = apply_project(&mut issued, &account.credentials, project);
        debug!(
            account_id = %account.id,
            platform = "antigravity",
            project_pending = pending,
            "token refreshed"
        );
        Ok(issued.merged_over(&account.credentials))
    }
}
