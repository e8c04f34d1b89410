//! [`GeminiExecutor`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use refresh_core::{
    Account, Credentials, Platform, ProviderError, RefreshContext, RefreshExecutor, Secret,
};
use tracing::{debug, warn};

use super::{GeminiConfig, OAuthType, drive, endpoints, issued, tier, token_request};
use crate::code_assist::{Caller, apply_project, discover_project};
use crate::http::HttpClients;
use crate::token::{claimed_refresh_token, follow_up_deadline, grant_from};

/// Gemini's refresh executor (REFERENCE.md §6.3, §7.1).
#[derive(Debug)]
pub struct GeminiExecutor {
    config: GeminiConfig,
    http: HttpClients,
}

impl GeminiExecutor {
    /// An executor with `config` over `http`.
    pub fn new(config: GeminiConfig, http: HttpClients) -> Self {
        Self { config, http }
    }

    /// The OAuth client of `oauth_type`: the built-in one, or for
    /// `ai_studio` the operator's when configured.
    fn client(&self, oauth_type: OAuthType) -> Result<(&str, &Secret), ProviderError> {
        let builtin = (
            self.config.builtin_client_id.as_str(),
            &self.config.builtin_client_secret,
        );
        if oauth_type != OAuthType::AiStudio {
            return Ok(builtin);
        }
        // Blank counts as unset, as in `GeminiConfig::validate` (a
        // templated variable that came out empty).
        let id = self
            .config
            .ai_studio_client_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty());
        let secret = self
            .config
            .ai_studio_client_secret
            .as_ref()
            .filter(|secret| !secret.is_blank());
        match (id, secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            (None, None) => Ok(builtin),
            _ => Err(ProviderError::Configuration {
                reason: "the AI Studio OAuth client is half configured (set both id and secret)"
                    .to_owned(),
            }),
        }
    }

    /// A caller for the follow-up calls with the new access token.
    fn caller<'a>(
        &'a self,
        account: &'a Account,
        access_token: &'a Secret,
        ctx: &RefreshContext,
    ) -> Caller<'a> {
        Caller {
            http: &self.http,
            proxy: account.proxy.as_ref(),
            access_token,
            user_agent: Some(self.config.code_assist_user_agent.as_str()),
            call_timeout: self.config.discovery.call_timeout,
            deadline: follow_up_deadline(ctx, self.config.discovery.reserve),
        }
    }

    /// Code Assist: the tier kept, and the project discovered when missing.
    async fn code_assist(&self, account: &Account, issued: &mut Credentials, caller: &Caller<'_>) {
        let old = &account.credentials;
        issued.insert("tier_id", tier::code_assist(&old.string_view("tier_id")));
        let mut project = None;
        if old.string_view("project_id").trim().is_empty() {
            match discover_project(caller, &endpoints(&self.config), &self.config.discovery).await {
                Ok(found) => project = Some(found.project_id),
                Err(reason) => warn!(
                    account_id = %account.id,
                    platform = "gemini",
                    %reason,
                    "project discovery failed; tokens kept, discovery pending"
                ),
            }
        }
        apply_project(issued, old, project);
    }

    /// Google One: the tier from the Drive quota, at most once per
    /// `drive_tier_ttl`.
    async fn google_one(
        &self,
        account: &Account,
        issued: &mut Credentials,
        caller: &Caller<'_>,
        now: DateTime<Utc>,
    ) {
        let stored = account.credentials.string_view("tier_id");
        let fresh = drive::last_update(&account.credentials, &account.extra).is_some_and(|at| {
            now.signed_duration_since(at)
                .to_std()
                .is_ok_and(|age| age < self.config.drive_tier_ttl)
        });
        let tier = if fresh {
            drive::fallback(&stored)
        } else {
            drive::read_tier(
                caller,
                &self.config.drive_about_url,
                issued,
                || now,
                &stored,
            )
            .await
            .unwrap_or_else(|e| {
                warn!(
                    account_id = %account.id,
                    platform = "gemini",
                    reason = %e.describe(),
                    "Drive tier lookup failed; keeping the stored tier"
                );
                drive::fallback(&stored)
            })
        };
        issued.insert("tier_id", tier);
    }
}

#[async_trait]
impl RefreshExecutor for GeminiExecutor {
    fn platform(&self) -> Platform {
        Platform::Gemini
    }

    fn rotates_refresh_token(&self) -> bool {
        false
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let refresh_token = claimed_refresh_token(ctx)?;
        let oauth_type =
            OAuthType::of(&account.credentials).map_err(|e| ProviderError::Configuration {
                reason: e.to_string(),
            })?;
        let (client_id, client_secret) = self.client(oauth_type)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose())
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose())
            .finish();
        let request = token_request(&self.config, form, account.proxy.as_ref());
        let response = self.http.send(request, ctx.deadline).await?;
        let now = ctx.now();
        let grant = grant_from(&response, now, "gemini")?;
        let mut issued = issued(&grant, now, oauth_type);
        let Some(access_token) = &grant.access_token else {
            // A rotation without an access token: stored, no follow-up.
            return Ok(issued.merged_over(&account.credentials));
        };
        let caller = self.caller(account, access_token, ctx);
        match oauth_type {
            OAuthType::CodeAssist => self.code_assist(account, &mut issued, &caller).await,
            OAuthType::GoogleOne => self.google_one(account, &mut issued, &caller, now).await,
            OAuthType::AiStudio => {}
        }
        tier::drop_unstorable(&mut issued);
        debug!(
            account_id = %account.id,
            platform = "gemini",
            oauth_type = oauth_type.as_str(),
            "token refreshed"
        );
        Ok(issued.merged_over(&account.credentials))
    }
}
