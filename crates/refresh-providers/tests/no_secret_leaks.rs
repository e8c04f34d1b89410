//! Invariant 9: no token value the emulator issued (nor a client secret or
//! proxy password) appears in a captured TRACE log of full refreshes of the
//! four providers, covering every failure kind, nor in any `Debug` or
//! `Display` of their results, errors, accounts, executors or configs.

mod common;

use std::time::Duration;

use common::*;
use refresh_core::plugin::*;
use refresh_providers::emulator::{Emulator, Fault, FaultKind, GrantSpec, paths};
use refresh_providers::{HttpClients, ProvidersConfig};

fn record(shown: &mut Vec<String>, what: &str, result: Result<Credentials, ProviderError>) {
    match result {
        Ok(creds) => shown.push(format!("{what}: {creds:?}")),
        Err(err) => shown.push(format!("{what}: {err} / {err:?} / {}", err.kind_name())),
    }
}

/// Every refresh outcome of `platform`, each result formatted into `shown`.
async fn every_outcome(emu: &Emulator, platform: &Platform, shown: &mut Vec<String>) {
    let (provider, token_path) = (emulated(platform), token_path(platform));
    let executor = executor_at(platform, &emu.url());
    shown.push(format!("{:?}", config_at(&emu.url())));

    // Success (Google grants without a project onboard), then a rotation.
    let grant = emu.seed(GrantSpec {
        onboard_project: Some("onboarded".into()),
        onboard_pending_polls: 1,
        ..GrantSpec::new(provider)
    });
    let first_rt = grant.refresh_token.expose().to_owned();
    let mut acct = account(platform, 1, &first_rt);
    acct.credentials.remove("project_id");
    shown.push(format!("{acct:?}"));
    let first = executor.refresh(&acct, &ctx(&first_rt)).await;
    let creds = first.clone().expect("first refresh");
    record(shown, "success", first);
    let next_rt = creds.refresh_token().unwrap().expose().to_owned();
    acct.set_credentials(creds);
    record(
        shown,
        "second",
        executor.refresh(&acct, &ctx(&next_rt)).await,
    );
    // Reuse of the consumed token (rotating upstreams revoke the grant),
    // then the revoked grant.
    record(
        shown,
        "reuse",
        executor.refresh(&acct, &ctx(&first_rt)).await,
    );
    emu.revoke(grant.grant_id);
    record(
        shown,
        "revoked",
        executor.refresh(&acct, &ctx(&next_rt)).await,
    );

    // Every fault kind, unprocessed and processed.
    for (fault, deadline) in [
        (Fault::new(FaultKind::ServerError), 10),
        (
            Fault::new(FaultKind::RateLimited {
                retry_after: "Wed, 21 Oct 2015 07:28:00 GMT".into(),
            }),
            10,
        ),
        (Fault::new(FaultKind::Reset), 10),
        (Fault::new(FaultKind::Reset).after_processing(), 10),
        (Fault::new(FaultKind::Hang), 1),
        (Fault::new(FaultKind::MalformedJson), 10),
        (Fault::new(FaultKind::MalformedJson).after_processing(), 10),
        (Fault::new(FaultKind::HtmlError), 10),
        (
            Fault::new(FaultKind::Oversized {
                bytes: 3_000_000,
                announce_length: false,
            }),
            10,
        ),
    ] {
        let grant = emu.seed(GrantSpec {
            project_id: Some("p".into()),
            ..GrantSpec::new(provider)
        });
        let rt = grant.refresh_token.expose().to_owned();
        emu.push_fault(fault.clone().on(token_path));
        let acct = account(platform, 2, &rt);
        let ctx = ctx_for(&rt, Duration::from_secs(deadline));
        record(
            shown,
            &format!("{fault:?}"),
            executor.refresh(&acct, &ctx).await,
        );
    }

    // A discovery that fails after the tokens (Code Assist faults).
    let grant = emu.seed(GrantSpec::new(provider));
    let rt = grant.refresh_token.expose().to_owned();
    emu.push_fault(Fault::new(FaultKind::ServerError).on(paths::LOAD_CODE_ASSIST));
    emu.push_fault(Fault::new(FaultKind::Reset).on(paths::LOAD_CODE_ASSIST));
    let mut acct = account(platform, 3, &rt);
    acct.credentials.remove("project_id");
    record(
        shown,
        "discovery failure",
        executor.refresh(&acct, &ctx(&rt)).await,
    );

    // The proxy is down; its password must not show either.
    let proxied = with_proxy(
        account(platform, 4, &rt),
        &format!("socks5://user:Pr0xyPassw0rdSecret@{}", closed_port()),
    );
    shown.push(format!("{proxied:?}"));
    record(
        shown,
        "proxy down",
        executor.refresh(&proxied, &ctx(&rt)).await,
    );
    // A client the upstream does not know.
    let mut config: ProvidersConfig = config_at(&emu.url());
    config.claude.client_id = "unknown-client".into();
    config.openai.client_id = "unknown-client".into();
    config.gemini.builtin_client_secret = Secret::from("GOCSPX-wrong-secret-value");
    config.antigravity.client_secret = Secret::from("GOCSPX-wrong-secret-value");
    shown.push(format!("{config:?}"));
    let wrong = executor_with(platform, config, HttpClients::default());
    record(
        shown,
        "wrong client",
        wrong.refresh(&account(platform, 5, &rt), &ctx(&rt)).await,
    );
    // Nothing to present.
    record(
        shown,
        "missing",
        executor
            .refresh(&account(platform, 6, &rt), &ctx(" "))
            .await,
    );
}

#[tokio::test]
async fn no_issued_token_appears_in_logs_or_in_any_debug_or_display() {
    let captured = Captured::global();

    let emu = Emulator::start().await.unwrap();
    let mut shown = Vec::new();
    for platform in &PLATFORMS {
        every_outcome(&emu, platform, &mut shown).await;
    }
    shown.push(format!("{emu:?} {:?}", emu.stats()));

    let log = captured.text();
    let shown = shown.join("\n");
    assert!(log.contains("token refreshed"), "the log was captured");
    assert!(log.contains("project discovery failed") || log.contains("project load failed"));
    let issued = emu.issued_tokens();
    assert!(issued.len() > 60, "tokens issued: {}", issued.len());
    let mut secrets: Vec<String> = issued.iter().map(|t| t.expose().to_owned()).collect();
    secrets.extend(
        [
            "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",
            "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",
            "GOCSPX-wrong-secret-value",
            "Pr0xyPassw0rdSecret",
        ]
        .map(str::to_owned),
    );
    assert_never_shown(&log, &shown, &secrets);
    // Every failure kind was exercised.
    for kind in [
        "invalid_grant",
        "rate_limited",
        "server_error",
        "ambiguous",
        "invalid_response",
        "not_sent",
        "invalid_client",
        "missing_refresh_token",
    ] {
        assert!(shown.contains(kind), "no {kind} outcome was exercised");
    }
}
