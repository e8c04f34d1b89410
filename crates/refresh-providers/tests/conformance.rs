//! Core's executor conformance suites for all four executors:
//! `refresh_executor_suite` against the emulator (rotation, reuse, the
//! claimed token, keys, the due predicate) and
//! `token_endpoint_mapping_suite` against the loopback endpoint the suite
//! starts itself.

mod common;

use common::*;
use refresh_core::plugin::*;
use refresh_core::testing::conformance::{refresh_executor_suite, token_endpoint_mapping_suite};
use refresh_providers::emulator::{Emulator, GrantSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_executor_passes_the_refresh_executor_suite_against_the_emulator() {
    for platform in &PLATFORMS {
        let emu = Emulator::start().await.unwrap();
        let executor = executor_at(platform, &emu.url());
        let emu = &emu;
        refresh_executor_suite(
            executor,
            |id| {
                // A fresh grant per check; Google grants know their project.
                let grant = emu.seed(GrantSpec {
                    project_id: Some(format!("project-{id}")),
                    ..GrantSpec::new(emulated(platform))
                });
                // No `expires_at`: a Claude setup-token copy of this
                // fixture is then the old, static kind.
                let account = account(platform, id.0, grant.refresh_token.expose());
                async move { account }
            },
            now(),
        )
        .await;
        assert!(
            emu.stats().refreshes >= 6,
            "{platform}: the suite refreshed against the emulator"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_executor_passes_the_token_endpoint_mapping_suite() {
    for platform in &PLATFORMS {
        token_endpoint_mapping_suite(
            |url| executor_at(platform, url),
            |id| {
                // Gemini without a project: the follow-up discovery gets
                // the suite's 503s and must not fail the refresh.
                let mut account = account(platform, id.0, "RT-fixture");
                account.credentials.remove("project_id");
                if *platform == Platform::Gemini {
                    account.credentials.insert("oauth_type", "code_assist");
                }
                async move { account }
            },
            now(),
        )
        .await;
    }
}
