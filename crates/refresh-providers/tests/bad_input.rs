//! Bad upstream input gets a typed error and nothing panics: HTML and
//! truncated bodies, a 20 MB body (cut off while streaming, never held
//! whole), a missing `access_token`, and zero, negative or absurd
//! `expires_in` (the tokens are kept with an assumed lifetime: dropping a
//! 2xx would lose a rotation).

mod common;

use std::time::Duration;

use common::*;
use refresh_core::ProviderError;
use refresh_core::domain::ASSUMED_TOKEN_LIFETIME;
use refresh_core::plugin::*;
use refresh_core::testing::{ScriptedReply, TokenEndpoint};
use refresh_providers::emulator::{Emulator, Fault, FaultKind, GrantSpec};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_body_is_cut_off_while_streaming_and_never_sent_whole() {
    const TWENTY_MB: u64 = 20_000_000;
    for announce_length in [false, true] {
        for platform in &PLATFORMS {
            let emu = Emulator::start().await.unwrap();
            let (provider, path) = (emulated(platform), token_path(platform));
            let grant = emu.seed(GrantSpec::new(provider));
            emu.push_fault(
                Fault::new(FaultKind::Oversized {
                    bytes: TWENTY_MB,
                    announce_length,
                })
                .on(path),
            );
            let rt = grant.refresh_token.expose();
            let executor = executor_at(platform, &emu.url());
            let err = executor
                .refresh(&account(platform, 1, rt), &ctx(rt))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ProviderError::InvalidResponse { reason } if reason.contains("larger than")),
                "{platform}: {err:?}"
            );
            // The client dropped the connection: the body stream ends.
            tokio::time::timeout(
                Duration::from_secs(20),
                emu.wait_until(|s| s.oversized_bodies_ended >= 1),
            )
            .await
            .expect("the oversized body ended once the client hung up");
            let sent = emu.stats().oversized_bytes_sent;
            assert!(
                sent < TWENTY_MB / 2,
                "{platform} (announced: {announce_length}): the emulator could hand {sent} bytes \
                 to the connection; a client buffering the whole body would have taken all 20 MB"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_html_pages_from_the_emulator_are_typed() {
    for platform in &PLATFORMS {
        let emu = Emulator::start().await.unwrap();
        let (provider, path) = (emulated(platform), token_path(platform));
        let grant = emu.seed(GrantSpec::new(provider));
        let rt = grant.refresh_token.expose();
        let executor = executor_at(platform, &emu.url());
        let account = account(platform, 2, rt);
        emu.push_fault(Fault::new(FaultKind::MalformedJson).on(path));
        let err = executor.refresh(&account, &ctx(rt)).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::InvalidResponse { .. }),
            "{platform}: {err:?}"
        );
        emu.push_fault(Fault::new(FaultKind::HtmlError).on(path));
        let err = executor.refresh(&account, &ctx(rt)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::ServerError {
                    status: Some(502),
                    ..
                }
            ),
            "{platform}: {err:?}"
        );
        // Neither consumed the grant: the next refresh works.
        assert!(
            executor.refresh(&account, &ctx(rt)).await.is_ok(),
            "{platform}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_expires_in_keeps_the_tokens_with_an_assumed_lifetime() {
    let assumed = ASSUMED_TOKEN_LIFETIME.as_secs() as i64;
    for platform in &PLATFORMS {
        let google = matches!(platform, Platform::Gemini | Platform::Antigravity);
        for expires_in in [
            json!(0),
            json!(-5),
            json!(1e300),
            json!(i64::MAX),
            json!("soon"),
            json!(null),
        ] {
            let endpoint = TokenEndpoint::start().await.unwrap();
            endpoint.push(ScriptedReply::json(
                200,
                &json!({"access_token": "AT-new-Kq8Lm2", "refresh_token": "RT-rotated-Zx5Kd7",
                        "expires_in": expires_in, "token_type": "Bearer"}),
            ));
            let executor = executor_at(platform, &endpoint.url());
            let creds = executor
                .refresh(&account(platform, 3, "RT-old"), &ctx("RT-claimed"))
                .await
                .unwrap_or_else(|e| panic!("{platform}, expires_in {expires_in}: {e:?}"));
            assert_eq!(
                creds.get("refresh_token"),
                Some(&json!("RT-rotated-Zx5Kd7")),
                "rotation kept"
            );
            let want = NOW_SECS + assumed - if google { 300 } else { 0 };
            assert_eq!(
                creds.get("expires_at"),
                Some(&json!(want.to_string())),
                "{platform}, expires_in {expires_in}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_never_panic_and_are_invalid_responses() {
    let bodies: [&[u8]; 9] = [
        br#"{"expires_in":3600}"#,
        br#"{"access_token":{"nested":1}}"#,
        br#"{"access_token":"","expires_in":3600}"#,
        br#"{"access_token":"AT","refresh_token":5}"#,
        b"[]",
        b"null",
        b"\xff\xfe\x00garbage",
        br#"{"access_token":"AT-trunc"#,
        b"",
    ];
    for platform in &PLATFORMS {
        for body in bodies {
            let endpoint = TokenEndpoint::start().await.unwrap();
            endpoint.push(
                ScriptedReply::status(200)
                    .header("Content-Type", "application/json")
                    .body(body.to_vec()),
            );
            let executor = executor_at(platform, &endpoint.url());
            let err = executor
                .refresh(&account(platform, 4, "RT-old"), &ctx("RT-claimed"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ProviderError::InvalidResponse { .. }),
                "{platform}, {:?}: {err:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
