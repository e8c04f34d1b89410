//! [`OpenAiExecutor`].

use async_trait::async_trait;
use refresh_core::domain::keys;
use refresh_core::{
    Account, Credentials, Platform, ProviderError, RefreshContext, RefreshExecutor,
};
use serde_json::Value;
use tracing::{debug, warn};

use super::{OpenAiConfig, id_token, issued, token_request};
use crate::http::{Capped, HttpClients};
use crate::token::{claimed_refresh_token, grant_from};

/// The credential key naming the account's own OAuth client.
const CLIENT_ID: &str = "client_id";

/// OpenAI's refresh executor (REFERENCE.md §6.2).
#[derive(Debug)]
pub struct OpenAiExecutor {
    config: OpenAiConfig,
    http: HttpClients,
}

impl OpenAiExecutor {
    /// An executor with `config` over `http`.
    pub fn new(config: OpenAiConfig, http: HttpClients) -> Self {
        Self { config, http }
    }
}

#[async_trait]
impl RefreshExecutor for OpenAiExecutor {
    fn platform(&self) -> Platform {
        Platform::OpenAi
    }

    async fn refresh(
        &self,
        account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        let refresh_token = claimed_refresh_token(ctx)?;
        let own_client = account.credentials.string_view(CLIENT_ID);
        let own_client = own_client.trim();
        let client_id = if own_client.is_empty() {
            self.config.client_id.as_str()
        } else {
            own_client
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose())
            .append_pair("client_id", client_id)
            .append_pair("scope", &self.config.scope)
            .finish();
        let request = token_request(&self.config, form, account.proxy.as_ref());
        let response = self.http.send(request, ctx.deadline).await?;
        let now = ctx.now();
        let mut issued = issued(&grant_from(&response, now, "openai")?, now);
        if let Capped::Complete(body) = &response.body {
            add_identity(&mut issued, body, now, account);
        }
        if !own_client.is_empty() {
            issued.insert(CLIENT_ID, own_client);
        }
        debug!(
            account_id = %account.id,
            platform = "openai",
            rotated = issued.get(keys::REFRESH_TOKEN).is_some(),
            "token refreshed"
        );
        Ok(issued.merged_over(&account.credentials))
    }
}

/// Adds `id_token` and its claims (each when non-empty) to `issued`.
fn add_identity(
    issued: &mut Credentials,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
    account: &Account,
) {
    let id_token = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("id_token")
                .and_then(Value::as_str)
                .map(str::trim)
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty());
    let Some(id_token) = id_token else {
        return;
    };
    if let Err(problem) = id_token::write_identity(issued, id_token, now) {
        warn!(
            account_id = %account.id,
            platform = "openai",
            problem = problem.as_str(),
            "id_token not usable; claims skipped"
        );
    }
}
