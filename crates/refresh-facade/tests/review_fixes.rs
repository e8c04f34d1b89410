//! End-to-end checks of the fixes after the facade review and the
//! new-user trial: the built `oauth-refresh` binary against a SQLite file
//! and the OAuth emulator (in this process).

mod common;

use common::*;
use refresh_providers::emulator::EmulatedProvider;
use serde_json::json;

/// A migrated sandbox.
async fn migrated() -> Sandbox {
    let sb = Sandbox::new().await;
    sb.write_config("");
    sb.run(&["migrate"]).await.ok();
    sb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_refresh_token_held_by_another_account_or_repeated_in_the_file() {
    let sb = migrated().await;
    let claude = sb.seed(EmulatedProvider::Claude);
    let rt = claude.refresh_token.expose();
    let later = now() + 7200;
    let file = sb.write_import("first.json", &json!([entry("one", "anthropic", rt, later)]));
    sb.run(&["accounts", "import", &file]).await.ok();

    // The same token again, in a second file: refused, naming the entry,
    // the field and the account holding it.
    let other = sb.seed(EmulatedProvider::OpenAi);
    let file = sb.write_import(
        "second.json",
        &json!([
            entry("fresh", "openai", other.refresh_token.expose(), later),
            entry("twin", "anthropic", rt, later),
        ]),
    );
    let out = sb.run(&["accounts", "import", &file]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{out:?}");
    for part in [
        "entry 1",
        "credentials.refresh_token",
        "account 1",
        "nothing was imported",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(!line.contains(rt), "no token in {line}");

    // Twice within one file: refused before anything is opened for writing.
    let file = sb.write_import(
        "dup.json",
        &json!([
            entry("a", "openai", other.refresh_token.expose(), later),
            entry("b", "openai", other.refresh_token.expose(), later),
        ]),
    );
    let out = sb.run(&["accounts", "import", &file]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr
            .contains("entry 1, field `credentials.refresh_token`")
            && out.stderr.contains("entry 0"),
        "{out:?}"
    );

    // `accounts add` with a held token: refused the same way.
    let credentials = json!({"access_token": "at", "refresh_token": rt, "expires_at": later});
    let out = sb
        .run_with_stdin(
            &["accounts", "add", "--name", "x", "--platform", "anthropic"],
            Some(&credentials.to_string()),
        )
        .await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("already held by account 1"), "{out:?}");

    let listed = sb.run(&["accounts", "list", "--json"]).await;
    assert_eq!(listed.ok().json().as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_account_is_refused_in_one_line_and_with_409_and_never_refreshed() {
    let sb = Sandbox::new().await;
    sb.write_config("[serve]\napi_keys = [\"a-long-enough-api-key-0001\"]\n");
    sb.run(&["migrate"]).await.ok();
    let claude = sb.seed(EmulatedProvider::Claude);
    // Expired: any read of an active account would refresh it.
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "c",
            "anthropic",
            claude.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    sb.run(&["accounts", "set-status", "1", "disabled"])
        .await
        .ok();

    let out = sb.run(&["token", "1"]).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("account 1 is disabled"), "{out:?}");

    let mut served = sb.serve(&["--no-worker"]).await;
    let response = http()
        .get(format!("{}/v1/accounts/1/access-token", served.url))
        .bearer_auth("a-long-enough-api-key-0001")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "account_inactive", "{body}");
    served.signal("-TERM");
    served.wait().await;
    assert_eq!(sb.emulator.stats().refreshes, 0, "never refreshed");
}
