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

/// Every metric the issue lists moves on a real code path of a library
/// stack (no binary, no manual recording): refresh outcomes, upstream
/// latency, lock acquisitions and contention, waiter latency, cache hits
/// and misses of the process layer, recovery records pending, background
/// cycles. (Lock fallbacks need Redis: `cluster_services`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_listed_metric_moves_on_a_real_code_path() {
    use refresh_facade::metrics::Metrics;
    use refresh_facade::{
        AccountId, AccountType, Credentials, NewAccount, Platform, ProvidersConfig, RefreshStack,
        SealingKey,
    };
    use std::time::Duration;

    let emulator = refresh_providers::emulator::Emulator::start()
        .await
        .expect("emulator");
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let key = SealingKey::generate();
    let (m0, m1) = (Metrics::new(), Metrics::new());
    let mut stacks = Vec::new();
    for (i, metrics) in [&m0, &m1].into_iter().enumerate() {
        stacks.push(
            RefreshStack::builder()
                .database(url.clone())
                .migrate(i == 0)
                .encryption_key(&key)
                .providers(ProvidersConfig::default().with_base_url(&emulator.url()))
                .observer(metrics.observer())
                .build()
                .await
                .expect("stack"),
        );
    }
    let grant = emulator.seed(refresh_providers::emulator::GrantSpec::new(
        EmulatedProvider::Claude,
    ));
    let account = stacks[0]
        .import(vec![NewAccount::new(
            "m",
            Platform::Anthropic,
            AccountType::OAuth,
            Credentials::new()
                .with("access_token", "at-old")
                .with("refresh_token", grant.refresh_token.expose())
                .with("expires_at", (now() - 60).to_string()),
        )])
        .await
        .expect("import")
        .remove(0);
    let read = |stack: &RefreshStack, metrics: &Metrics| {
        let (stack, metrics) = (stack.clone(), metrics.clone());
        async move { parse_prometheus(&metrics.render(&stack, Duration::from_secs(2)).await) }
    };

    // Instance 1 holds the refresh lease: instance 0's read contends and
    // waits; once instance 1 refreshes, the waiter gets the new token.
    let lease_key = stacks[1]
        .executors()
        .get(&Platform::Anthropic)
        .expect("executor")
        .key(&account);
    let lock = stacks[1].database().lease_lock();
    let lease =
        refresh_facade::core::RefreshLock::try_acquire(&lock, &lease_key, Duration::from_secs(30))
            .await
            .expect("lease")
            .expect("free");
    let waiter = {
        let stack = stacks[0].clone();
        tokio::spawn(async move { stack.tokens().access_token_by_id(AccountId(1)).await })
    };
    let (s0, m0c) = (stacks[0].clone(), m0.clone());
    eventually("instance 0 contends", Duration::from_secs(10), || {
        let read = read(&s0, &m0c);
        async move {
            metric(
                &read.await,
                "oauth_refresh_lock_contentions_total",
                &[("layer", "database")],
            ) >= 1.0
        }
    })
    .await;
    refresh_facade::core::RefreshLock::release(&lock, &lease)
        .await
        .expect("release");
    let fresh = stacks[1]
        .tokens()
        .access_token_by_id(AccountId(1))
        .await
        .expect("instance 1 refreshes");
    let waited = waiter.await.expect("join").expect("the waiter is served");
    assert_eq!(waited.token.expose(), fresh.token.expose());
    // A warm read of instance 0: a process-layer hit.
    stacks[0]
        .tokens()
        .access_token_by_id(AccountId(1))
        .await
        .expect("warm");
    // A background cycle of instance 0 (run by the library, not the binary).
    stacks[0].background().run_once().await;
    // An upstream answer parked in a generation claim: a recovery record.
    let claims = stacks[0].claims();
    let parked = refresh_facade::core::ClaimKey::new(
        Platform::Anthropic,
        refresh_facade::core::Fingerprint::of_bytes(b"parked"),
    );
    let id = refresh_facade::core::ClaimId::random();
    claims
        .acquire(&parked, &id, AccountId(1), 0, Duration::from_secs(60))
        .await
        .expect("claim");
    claims
        .save_answer(&parked, &id, &Credentials::new().with("access_token", "x"))
        .await
        .expect("answer");

    let zero = read(&stacks[0], &m0).await;
    let one = read(&stacks[1], &m1).await;
    for (samples, name, labels) in [
        (
            &one,
            "oauth_refresh_refreshes_total",
            vec![("platform", "anthropic"), ("outcome", "refreshed")],
        ),
        (
            &one,
            "oauth_refresh_upstream_latency_seconds_count",
            vec![("platform", "anthropic")],
        ),
        (
            &one,
            "oauth_refresh_lock_acquisitions_total",
            vec![("layer", "database")],
        ),
        (
            &zero,
            "oauth_refresh_lock_contentions_total",
            vec![("layer", "database")],
        ),
        (
            &zero,
            "oauth_refresh_waiter_latency_seconds_count",
            vec![("platform", "anthropic")],
        ),
        (
            &zero,
            "oauth_refresh_cache_lookups_total",
            vec![("layer", "process"), ("result", "hit")],
        ),
        (
            &zero,
            "oauth_refresh_cache_lookups_total",
            vec![("layer", "process"), ("result", "miss")],
        ),
        (&zero, "oauth_refresh_recovery_records_pending", vec![]),
        (
            &zero,
            "oauth_refresh_background_cycles_total",
            vec![("result", "complete")],
        ),
        (
            &zero,
            "oauth_refresh_background_cycle_duration_seconds_count",
            vec![],
        ),
    ] {
        assert!(
            metric(samples, name, &labels) >= 1.0,
            "{name}{labels:?} did not move"
        );
    }
    assert_eq!(
        metric(&zero, "oauth_refresh_background_cycles_total", &[]),
        1.0,
        "one cycle, recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_grace_shorter_than_a_refresh_is_refused_and_the_default_waits_for_it() {
    let sb = Sandbox::new().await;
    let keys = "[serve]\napi_keys = [\"a-long-enough-api-key-0001\"]\n";
    let flow = "[flow]\nupstream_timeout = \"5s\"\nupstream_grace = \"1s\"\n";
    sb.write_config(&format!("shutdown_grace = \"1s\"\n{keys}{flow}"));
    for command in [&["run"][..], &["serve", "--no-worker"]] {
        let out = sb.run(command).await;
        assert_eq!(out.code(), 2, "{command:?}: {out:?}");
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{out:?}");
        assert!(
            line.contains("`shutdown_grace` (1s)") && line.contains("flow.upstream_timeout"),
            "{line}"
        );
    }

    // Left unset, the grace is the flow's own deadline: a SIGTERM while a
    // slow upstream answers waits for the answer and stores it.
    sb.write_config(&format!("{keys}{flow}"));
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::Claude);
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "c",
            "anthropic",
            grant.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let config = sb.run(&["config"]).await;
    // 5 s + 1 s upstream, 5 persist attempts of 5 s with their backoffs
    // (0.1 + 0.1 + 0.2 + 0.4 + 0.8 s), a 2 s release.
    assert!(
        config
            .ok()
            .stdout
            .contains("shutdown_grace = \"34s 600ms\""),
        "{config:?}"
    );
    let mut served = sb.serve(&["--no-worker"]).await;
    sb.emulator
        .set_latency(refresh_providers::emulator::Latency::fixed(
            std::time::Duration::from_secs(3),
        ));
    let url = format!("{}/v1/accounts/1/access-token", served.url);
    let request = tokio::spawn(async move {
        http()
            .get(url)
            .bearer_auth("a-long-enough-api-key-0001")
            .send()
            .await
    });
    let emulator = &sb.emulator;
    eventually(
        "the refresh reached the upstream",
        std::time::Duration::from_secs(30),
        || async {
            emulator
                .stats()
                .requests(refresh_providers::emulator::paths::CLAUDE_TOKEN)
                >= 1
        },
    )
    .await;
    served.signal("-TERM");
    assert!(served.wait().await.success(), "{}", served.logs());
    drop(request);
    sb.emulator
        .set_latency(refresh_providers::emulator::Latency::default());
    let show = sb.run(&["accounts", "show", "1", "--json"]).await.json();
    assert_eq!(
        show["credentials_version"], 1,
        "persisted before exit: {show}"
    );
    sb.run(&["token", "1"]).await.ok();
    assert_eq!(sb.emulator.stats().refreshes, 1);
    assert_eq!(sb.emulator.stats().reuse_attempts, 0);
}

/// `token` on a refresh whose answer the database refuses (another
/// process holds SQLite's write lock when the answer arrives): the token
/// is printed at once, and the process then waits for the detached rescue
/// to store the rotation instead of exiting over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_shot_token_waits_for_the_detached_rescue_before_exiting() {
    use sea_orm::{ConnectOptions, ConnectionTrait, Database};
    use std::process::Stdio;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let sb = Sandbox::new().await;
    sb.write_config(
        "[database]\nsqlite_busy_timeout = \"50ms\"\n[flow]\npersist_attempts = 2\npersist_attempt_timeout = \"1s\"\nstorage_timeout = \"1s\"\n",
    );
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::Claude);
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "c",
            "anthropic",
            grant.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    sb.emulator
        .set_latency(refresh_providers::emulator::Latency::fixed(
            Duration::from_secs(2),
        ));

    let mut child = sb
        .command(&["token", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn token");
    let emulator = &sb.emulator;
    eventually(
        "the refresh reached the upstream",
        Duration::from_secs(30),
        || async {
            emulator
                .stats()
                .requests(refresh_providers::emulator::paths::CLAUDE_TOKEN)
                >= 1
        },
    )
    .await;
    // Another writer holds the database while the upstream answers.
    let url = format!("sqlite://{}", sb.path().join("oauth-refresh.db").display());
    let blocker = Database::connect(ConnectOptions::new(url).max_connections(1).to_owned())
        .await
        .expect("connect");
    blocker
        .execute_unprepared("BEGIN IMMEDIATE")
        .await
        .expect("write lock");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let printed = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the token is printed")
        .expect("read")
        .expect("a line");
    assert!(printed.starts_with("sk-ant-"), "{printed}");
    // The rotation exists only in that process now: it must not exit.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), child.wait())
            .await
            .is_err(),
        "the process exited while its rescue still held the only copy of the rotation"
    );
    blocker.execute_unprepared("COMMIT").await.expect("commit");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits once the rescue stored the answer")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let show = sb.run(&["accounts", "show", "1", "--json"]).await.json();
    assert_eq!(
        show["credentials_version"], 1,
        "the rotation is stored: {show}"
    );
    let again = sb.run(&["token", "1"]).await;
    assert_eq!(
        again.ok().stdout.trim(),
        printed,
        "the stored token is the printed one"
    );
    assert_eq!(sb.emulator.stats().refreshes, 1);
    assert_eq!(sb.emulator.stats().reuse_attempts, 0);
}

/// Environment values stay the text they are: an API key and a sealing key
/// made of digits (with leading zeros) are not re-typed as numbers, while
/// number settings given as text still read as numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_values_made_of_digits_stay_strings() {
    let api_key = "000123456789012345678";
    let hex_key = "0123456789".repeat(7)[..64].to_owned();
    let sb = Sandbox::new()
        .await
        .env("OAUTH_REFRESH_SERVE__API_KEYS", api_key)
        .env("OAUTH_REFRESH_ENCRYPTION_KEY", &hex_key)
        .env("OAUTH_REFRESH_DATABASE__MAX_CONNECTIONS", "3")
        .env("OAUTH_REFRESH_ALLOW_PLAINTEXT", "false");
    sb.write_config("");
    let migrated = sb.run(&["migrate"]).await;
    assert!(
        migrated.ok().stdout.contains("sealing: encryption_key"),
        "{migrated:?}"
    );
    let config = sb.run(&["config"]).await;
    assert!(
        config.ok().stdout.contains("max_connections = 3"),
        "{config:?}"
    );
    let mut served = sb.serve(&["--no-worker"]).await;
    let response = http()
        .get(format!("{}/v1/accounts", served.url))
        .bearer_auth(api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "the key as written is accepted");
    let mangled = http()
        .get(format!("{}/v1/accounts", served.url))
        .bearer_auth(api_key.trim_start_matches('0'))
        .send()
        .await
        .expect("request");
    assert_eq!(mangled.status(), 401);
    served.signal("-TERM");
    served.wait().await;
}

/// A database of sealed credentials opened in plaintext mode, or with
/// another key, is refused in one line naming the key source, and nothing
/// is written (no plaintext row beside the sealed ones, no row only the
/// wrong key opens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_credentials_are_never_opened_or_joined_without_their_key() {
    let sb = migrated().await;
    let claude = sb.seed(EmulatedProvider::Claude);
    let later = now() + 7200;
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "one",
            "anthropic",
            claude.refresh_token.expose(),
            later
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let other = sb.seed(EmulatedProvider::OpenAi);
    let second = sb.write_import(
        "b.json",
        &json!([entry("two", "openai", other.refresh_token.expose(), later)]),
    );
    let key = sb.path().join("oauth-refresh.key");
    let moved = sb.path().join("moved.key");
    std::fs::rename(&key, &moved).expect("move the key away");

    // No key, plaintext allowed: refused, nothing written.
    sb.write_config("allow_plaintext = true\n");
    let out = sb.run(&["accounts", "import", &second]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{out:?}");
    assert!(
        line.contains("sealed credentials") && line.contains("allow_plaintext"),
        "{line}"
    );

    // Another key: refused, naming where the key came from.
    let wrong = refresh_facade::SealingKey::generate();
    let sb = sb.env(
        "OAUTH_REFRESH_ENCRYPTION_KEY",
        wrong.expose_base64().as_str(),
    );
    sb.write_config("");
    let out = sb.run(&["accounts", "import", &second]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("does not open the stored credentials")
            && out.stderr.contains("key source: encryption_key"),
        "{out:?}"
    );

    // `migrate` with the key file missing does not generate a new key.
    let sb = Sandbox {
        env: Vec::new(),
        ..sb
    };
    let out = sb.run(&["migrate"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("restore the key file"), "{out:?}");
    assert!(!key.exists(), "no useless key file left behind");

    // With the right key back, only the first account is there.
    std::fs::rename(&moved, &key).expect("restore the key");
    let listed = sb.run(&["accounts", "list", "--json"]).await;
    let listed = listed.ok().json();
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["one"], "nothing was written without the key");
}

/// The key file and the SQLite file `migrate` creates are readable by
/// their owner only; a key file others may read is refused in one line.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_and_database_files_are_private_and_a_readable_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let sb = migrated().await;
    let mode = |name: &str| {
        std::fs::metadata(sb.path().join(name))
            .expect(name)
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("oauth-refresh.key"), 0o600);
    assert_eq!(mode("oauth-refresh.db"), 0o600);
    let key = sb.path().join("oauth-refresh.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = sb.run(&["accounts", "list"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("readable by group or others (mode 644)")
            && out.stderr.contains("chmod 600"),
        "{out:?}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    sb.run(&["accounts", "list"]).await.ok();
}

/// A relative SQLite path in a configuration file resolves against the
/// file's directory (wherever the command runs), and a command other than
/// `migrate` on a database file that does not exist fails clearly instead
/// of creating an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_paths_resolve_beside_the_config_and_only_migrate_creates_a_database() {
    let sb = Sandbox::new().await;
    let conf = sb.path().join("conf");
    std::fs::create_dir(&conf).expect("dir");
    std::fs::write(
        conf.join("oauth.toml"),
        "database_url = \"sqlite://data.db?mode=rwc\"\n",
    )
    .expect("config");
    let out = sb.run(&["--config", "conf/oauth.toml", "migrate"]).await;
    out.ok();
    assert!(conf.join("data.db").exists(), "beside the config: {out:?}");
    assert!(conf.join("oauth-refresh.key").exists());
    assert!(
        !sb.path().join("data.db").exists(),
        "not in the working directory"
    );
    sb.run(&["--config", "conf/oauth.toml", "accounts", "list"])
        .await
        .ok();

    // A typo: no database appears, the error says what to do.
    let out = sb
        .run(&[
            "--config",
            "conf/oauth.toml",
            "--database-url",
            "sqlite://dtaa.db?mode=rwc",
            "accounts",
            "list",
        ])
        .await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("dtaa.db does not exist") && out.stderr.contains("migrate"),
        "{out:?}"
    );
    assert!(
        !sb.path().join("dtaa.db").exists(),
        "no empty database created"
    );
}

/// `serve` refuses weak API keys; disconnects a client that trickles its
/// headers (slowloris); refuses large bodies; and answers 400, 405 and
/// unknown routes with the JSON error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bounds_slow_clients_and_bodies_and_every_error_is_json() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sb = Sandbox::new().await;
    sb.write_config("[serve]\napi_keys = [\"a-long-enough-api-key-0001\", \"short\"]\n");
    sb.run(&["migrate"]).await.ok();
    let out = sb.run(&["serve", "--no-worker"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("key 2 is shorter than 16 characters"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("short\""),
        "the key is not quoted: {out:?}"
    );

    let key = "a-long-enough-api-key-0001";
    sb.write_config(&format!(
        "[serve]\napi_keys = [\"{key}\"]\nheader_read_timeout = \"1s\"\n"
    ));
    let mut served = sb.serve(&["--no-worker"]).await;
    let client = http();
    let expect_json = |status: u16, code: &'static str| {
        move |response: reqwest::Response| async move {
            assert_eq!(response.status().as_u16(), status, "{code}");
            let body: serde_json::Value = response.json().await.expect("a JSON body");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
    };
    let get = |path: &str| client.get(format!("{}{path}", served.url)).bearer_auth(key);
    expect_json(400, "bad_request")(get("/v1/accounts/abc/access-token").send().await.unwrap())
        .await;
    expect_json(404, "not_found")(get("/nope").send().await.unwrap()).await;
    expect_json(404, "not_found")(get("/v1/nope").send().await.unwrap()).await;
    expect_json(405, "method_not_allowed")(
        client
            .delete(format!("{}/v1/accounts/1", served.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    expect_json(405, "method_not_allowed")(
        client
            .post(format!("{}/healthz", served.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    expect_json(413, "payload_too_large")(
        client
            .post(format!("{}/v1/accounts/1/refresh", served.url))
            .bearer_auth(key)
            .body(vec![b'x'; 1024 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await;

    // A client that sends half a request line and stops is disconnected.
    let addr = served.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read(&mut buf))
        .await
        .expect("the server closed the connection in time");
    assert!(
        matches!(read, Ok(n) if n == 0 || buf[..n].starts_with(b"HTTP/1.1 408")) || read.is_err(),
        "closed (or 408) rather than kept waiting: {read:?}"
    );
    // The server still serves others.
    assert_eq!(
        client
            .get(format!("{}/healthz", served.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    served.signal("-TERM");
    assert!(served.wait().await.success());
}

/// `config` redacts every secret, endpoint credentials included; zero or
/// absurd durations and sizes and empty URLs are refused in one line
/// naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_redacts_every_secret_and_validation_names_the_key() {
    let sb = Sandbox::new().await;
    let key = refresh_facade::SealingKey::generate();
    let previous = refresh_facade::SealingKey::generate();
    let text = format!(
        "database_url = \"postgres://app:db-pw-secret@db.example/x?sslpassword=ssl-secret\"\n\
         redis_url = \"redis://:redis-pw-secret@cache:6379/0\"\n\
         encryption_key = \"{}\"\n\
         previous_encryption_keys = [\"{}\"]\n\
         [serve]\napi_keys = [\"api-key-secret-0123456789\"]\n\
         [providers.claude]\ntoken_url = \"https://user:endpoint-pw-secret@proxy.example/v1/oauth/token\"\n\
         [providers.gemini]\nai_studio_client_id = \"id\"\nai_studio_client_secret = \"studio-secret\"\n",
        key.expose_base64().as_str(),
        previous.expose_base64().as_str()
    );
    std::fs::write(sb.path().join("oauth-refresh.toml"), text).expect("config");
    let out = sb.run(&["config"]).await;
    out.ok();
    for secret in [
        "db-pw-secret",
        "ssl-secret",
        "redis-pw-secret",
        "api-key-secret",
        "endpoint-pw-secret",
        "studio-secret",
        key.expose_base64().as_str(),
        previous.expose_base64().as_str(),
    ] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} shown:\n{}",
            out.stdout
        );
    }
    out.stdout.parse::<toml::Table>().expect("still TOML");

    for (text, named) in [
        (
            "[background]\nconcurrency = 0\n",
            "`background.concurrency`",
        ),
        ("[background]\nretries = 0\n", "`background.retries`"),
        (
            "[background]\nwindow = \"1000days\"\n",
            "`background.window`",
        ),
        (
            "[flow]\nupstream_timeout = \"0s\"\n",
            "`flow.upstream_timeout`",
        ),
        (
            "[database]\nmax_connections = 0\n",
            "`database.max_connections`",
        ),
        (
            "[database]\nacquire_timeout = \"0s\"\n",
            "`database.acquire_timeout`",
        ),
        (
            "[redis]\ncommand_timeout = \"0s\"\n",
            "`redis.command_timeout`",
        ),
        (
            "[serve]\nheader_read_timeout = \"0s\"\n",
            "`serve.header_read_timeout`",
        ),
        ("database_url = \" \"\n", "`database_url`"),
    ] {
        std::fs::write(sb.path().join("oauth-refresh.toml"), text).expect("config");
        let out = sb.run(&["config"]).await;
        assert_eq!(out.code(), 2, "{text}: {out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains(named), "{text}: {named} in {out:?}");
    }
}

/// `RefreshStack::refresh(id, force)`: the refresh by id the CLI and the
/// HTTP API use, for library users too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_refreshes_by_id_with_typed_refusals() {
    use refresh_facade::{
        AccountId, AccountStatus, AccountType, Credentials, MetadataUpdate, NewAccount, Platform,
        ProvidersConfig, RefreshOutcome, RefreshStack, SealingKey, TokenError,
    };
    let emulator = refresh_providers::emulator::Emulator::start()
        .await
        .expect("emulator");
    let dir = tempfile::tempdir().expect("dir");
    let stack = RefreshStack::builder()
        .database(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("r.db").display()
        ))
        .migrate(true)
        .encryption_key(&SealingKey::generate())
        .providers(ProvidersConfig::default().with_base_url(&emulator.url()))
        .build()
        .await
        .expect("stack");
    let grant = emulator.seed(refresh_providers::emulator::GrantSpec::new(
        EmulatedProvider::Claude,
    ));
    let fresh = Credentials::new()
        .with("access_token", "at-fresh")
        .with("refresh_token", grant.refresh_token.expose())
        .with("expires_at", (now() + 7 * 86_400).to_string());
    let imported = stack
        .import(vec![
            NewAccount::new("c", Platform::Anthropic, AccountType::OAuth, fresh),
            NewAccount::new(
                "k",
                Platform::OpenAi,
                AccountType::ApiKey,
                Credentials::new().with("api_key", "sk-x"),
            ),
        ])
        .await
        .expect("import");
    let (oauth, apikey) = (imported[0].id, imported[1].id);

    let outcome = stack.refresh(oauth, false).await.expect("not due");
    assert!(
        matches!(outcome, RefreshOutcome::StillFresh { .. }),
        "{outcome:?}"
    );
    let outcome = stack.refresh(oauth, true).await.expect("forced");
    assert!(
        matches!(&outcome, RefreshOutcome::Refreshed { account, .. } if account.credentials_version == 1),
        "{outcome:?}"
    );
    assert_eq!(emulator.stats().refreshes, 1);
    assert!(matches!(
        stack.refresh(AccountId(999), true).await,
        Err(TokenError::UnknownAccount { .. })
    ));
    assert!(matches!(
        stack.refresh(apikey, true).await,
        Err(TokenError::NotEligible { .. })
    ));
    stack
        .catalog()
        .update_metadata(
            oauth,
            &MetadataUpdate {
                status: Some(AccountStatus::Disabled),
                ..MetadataUpdate::default()
            },
        )
        .await
        .expect("disable");
    assert!(matches!(
        stack.refresh(oauth, true).await,
        Err(TokenError::Inactive {
            status: AccountStatus::Disabled,
            ..
        })
    ));
    assert_eq!(emulator.stats().refreshes, 1, "nothing more was sent");
}

/// Every CLI error is one line with the reason, not only its context; a
/// token read of a revoked grant says why it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_token_read_names_the_reason_in_one_line() {
    let sb = migrated().await;
    let grant = sb.seed(EmulatedProvider::Claude);
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "c",
            "anthropic",
            grant.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    assert!(sb.emulator.revoke(grant.grant_id));
    let out = sb.run(&["token", "1"]).await;
    assert_eq!(out.code(), 1, "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{out:?}");
    assert!(
        line.contains("no valid token for account 1") && line.contains("rejected by upstream"),
        "the reason, not only the context: {line}"
    );
    assert!(!line.contains(grant.refresh_token.expose()));
    let verbose = sb.run(&["--verbose", "token", "1"]).await;
    assert!(
        verbose.stderr.lines().any(|l| l.contains("caused by")),
        "--verbose adds the chain: {verbose:?}"
    );
}

/// The demo refuses empty runs, and carries 250 callers per account and
/// instance on four instances (8 000 concurrent reads a round) under a
/// 256-descriptor limit: one refresh per expiry, no reuse.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_validates_its_flags_and_carries_a_thousand_callers() {
    let sb = Sandbox::new().await;
    for flag in ["--accounts", "--callers", "--instances", "--rounds"] {
        let out = sb.run(&["demo", flag, "0"]).await;
        assert_eq!(out.code(), 2, "{out:?}");
        assert!(
            out.stderr.contains(&format!("{flag} must be between 1")),
            "{out:?}"
        );
    }
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec '{}' demo --callers 250 --instances 4 --rounds 2 --latency-ms 20 --json",
            bin()
        ))
        .current_dir(sb.path())
        .output()
        .await
        .expect("demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["callers"], 16_000, "{report}");
    assert_eq!(report["callers_failed"], 0, "{report}");
    assert_eq!(report["upstream_refreshes"], report["expiries"], "{report}");
    assert_eq!(report["reuse_attempts"], 0, "{report}");
    assert_eq!(report["revoked_grants"], 0, "{report}");
    assert_eq!(report["callers_served_a_stale_token"], 0, "{report}");
}
