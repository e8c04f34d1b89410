//! The twenty lines a library user copies: a SQLite stack, one imported
//! account, a valid token, the background worker.
//!
//! `cargo run -p refresh-facade --example quickstart` (the OAuth emulator
//! stands in for Claude's token endpoint).
#![allow(clippy::print_stdout)]

use refresh_facade::prelude::*;
use refresh_facade::providers::emulator::{EmulatedProvider, Emulator, GrantSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Stand-in for the real upstream: drop these two lines and `.providers(..)`.
    let emulator = Emulator::start().await?;
    let grant = emulator.seed(GrantSpec::new(EmulatedProvider::Claude));

    let dir = tempfile::tempdir()?; // yours: a file you keep, e.g. "sqlite://oauth-refresh.db?mode=rwc"
    let stack = RefreshStack::builder()
        .database(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("quickstart.db").display()
        ))
        .migrate(true)
        .encryption_key(&SealingKey::generate()) // yours: a key you keep (OAUTH_REFRESH_ENCRYPTION_KEY)
        .providers(ProvidersConfig::default().with_base_url(&emulator.url()))
        .build()
        .await?;

    let credentials = Credentials::new()
        .with("access_token", "at-from-login")
        .with("refresh_token", grant.refresh_token.expose())
        .with("expires_at", "1700000000"); // long expired: the first read refreshes
    let new = NewAccount::new(
        "team-claude",
        Platform::Anthropic,
        AccountType::OAuth,
        credentials,
    );
    let account = stack.import(vec![new]).await?.remove(0);

    let token = stack.tokens().access_token_by_id(account.id).await?;
    println!(
        "account {} has a token valid until {:?}",
        account.id, token.expires_at
    );

    let shutdown = CancellationToken::new();
    let worker = stack.background().spawn(shutdown.clone()); // keeps every account fresh
    shutdown.cancel();
    worker.await?;
    Ok(())
}
