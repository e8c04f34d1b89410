//! End-to-end against PostgreSQL and Redis (`cargo xtask test` provides
//! them): the CLI on PostgreSQL + Redis, and three `serve` processes
//! sharing them under 1 000 concurrent token requests on expiring Claude
//! and OpenAI accounts, with Redis up and with Redis killed first.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use refresh_providers::emulator::{EmulatedProvider, Latency};
use serde_json::{Value, json};

fn config(pg: &PgDatabase, redis_url: &str, prefix: &str) -> String {
    format!(
        "database_url = \"{}\"\nredis_url = \"{redis_url}\"\n\
         [database]\nmax_connections = 4\n\
         [redis]\nkey_prefix = \"{prefix}\"\n\
         [serve]\napi_keys = [\"cluster-key-0123456789\"]\n",
        pg.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn migrate_import_list_show_token_refresh_on_postgres_with_redis() {
    let pg = PgDatabase::create("cli_pg").await;
    let redis = RedisPrefix::new("cli_pg");
    let sb = Sandbox::new().await;
    sb.write_config(&config(&pg, &redis.url, &redis.prefix));
    let out = sb.run(&["migrate"]).await;
    out.ok();
    assert!(out.stdout.contains("postgres://"), "{out:?}");
    let claude = sb.seed(EmulatedProvider::Claude);
    let openai = sb.seed(EmulatedProvider::OpenAi);
    let file = sb.write_import(
        "a.json",
        &json!([
            entry(
                "pg-claude",
                "anthropic",
                claude.refresh_token.expose(),
                now() - 60
            ),
            entry(
                "pg-openai",
                "openai",
                openai.refresh_token.expose(),
                now() - 60
            ),
        ]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let rows = sb.run(&["accounts", "list", "--json"]).await.json();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let show = sb.run(&["accounts", "show", "2", "--json"]).await.json();
    assert_eq!(show["name"], "pg-openai");

    let first = sb.run(&["token", "1"]).await;
    first.ok();
    let again = sb.run(&["token", "1"]).await;
    assert_eq!(first.stdout, again.stdout, "the stored token is served");
    sb.run(&["token", "2"]).await.ok();
    assert_eq!(sb.emulator.stats().refreshes, 2);
    let forced = sb.run(&["refresh", "2", "--force"]).await;
    forced.ok();
    assert!(forced.stdout.contains("refreshed"), "{forced:?}");
    let show = sb.run(&["accounts", "show", "2", "--json"]).await.json();
    assert_eq!(show["credentials_version"], 2);
    let stats = sb.emulator.stats();
    assert_eq!((stats.refreshes, stats.reuse_attempts), (3, 0));
    assert!(stats.revoked_grants.is_empty());

    // The sidecar over PostgreSQL + Redis: ready, and a warm read touches
    // neither store.
    let mut served = sb.serve(&["--no-worker"]).await;
    let client = http();
    let ready: Value = client
        .get(format!("{}/readyz", served.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], "ok");
    let url = format!("{}/v1/accounts/1/access-token", served.url);
    let cold = client
        .get(&url)
        .bearer_auth("cluster-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(cold.status(), 200);
    let cold: Value = cold.json().await.unwrap();
    assert_eq!(cold["access_token"].as_str(), Some(first.stdout.trim()));
    let before = scrape(&served.url).await;
    for _ in 0..100 {
        let warm: Value = client
            .get(&url)
            .bearer_auth("cluster-key-0123456789")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(warm["access_token"], cold["access_token"]);
    }
    let after = scrape(&served.url).await;
    let store = |s: &[Sample], store: &str| {
        metric(s, "oauth_refresh_store_calls_total", &[("store", store)])
    };
    assert!(store(&before, "redis") >= 1.0, "the cold read asked Redis");
    assert_eq!(store(&after, "database"), store(&before, "database"));
    assert_eq!(store(&after, "redis"), store(&before, "redis"));
    // Redis holds the cached token sealed, never in clear.
    let (keys, values) = dump_prefix(&redis.url, &redis.prefix).await;
    assert!(keys >= 1, "the token was cached in Redis");
    assert!(values.contains("s1."), "a sealed envelope: {values}");
    assert_no_secret(&sb.emulator, &values, "Redis");
    served.signal("-TERM");
    assert!(served.wait().await.success(), "{}", served.logs());
    assert_no_secret(&sb.emulator, &served.logs(), "the serve log");
}

/// Three `serve` processes on one PostgreSQL database and one Redis,
/// 1 000 concurrent token requests on 4 Claude and 4 OpenAI accounts
/// whose tokens are within the refresh skew.
async fn hammer(test: &str, kill_redis_first: bool) {
    let pg = PgDatabase::create(test).await;
    let shared = (!kill_redis_first).then(|| RedisPrefix::new(test));
    let mut own = if kill_redis_first {
        Some(OwnRedis::start().await)
    } else {
        None
    };
    let (redis_url, prefix) = match (&shared, &own) {
        (Some(shared), _) => (shared.url.clone(), shared.prefix.clone()),
        (None, Some(own)) => (own.url(), format!("t-{}", unique(test))),
        _ => unreachable!(),
    };
    let sb = Sandbox::new().await;
    sb.write_config(&config(&pg, &redis_url, &prefix));
    sb.run(&["migrate"]).await.ok();
    let mut entries = Vec::new();
    for i in 0..8 {
        let (provider, platform) = if i % 2 == 0 {
            (EmulatedProvider::Claude, "anthropic")
        } else {
            (EmulatedProvider::OpenAi, "openai")
        };
        let grant = sb.seed(provider);
        entries.push(entry(
            &format!("acct-{i}"),
            platform,
            grant.refresh_token.expose(),
            now() + 60,
        ));
    }
    let file = sb.write_import("a.json", &Value::Array(entries));
    let imported = sb
        .run(&["accounts", "import", &file, "--json"])
        .await
        .json();
    let ids: Vec<i64> = imported
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(sb.serve(&["--no-worker"]).await);
    }
    if let Some(own) = &mut own {
        own.kill();
    }
    sb.emulator
        .set_latency(Latency::fixed(Duration::from_millis(50)));

    let client = http();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1000usize {
        let url = format!(
            "{}/v1/accounts/{}/access-token",
            servers[i % 3].url,
            ids[i % ids.len()]
        );
        let (client, id) = (client.clone(), ids[i % ids.len()]);
        calls.spawn(async move {
            let response = client
                .get(url)
                .bearer_auth("cluster-key-0123456789")
                .send()
                .await
                .expect("request");
            let status = response.status();
            let body: Value = response.json().await.expect("json");
            (id, status, body)
        });
    }
    let mut tokens: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut answered = 0;
    while let Some(call) = calls.join_next().await {
        let (id, status, body) = call.expect("task");
        assert_eq!(status, 200, "account {id}: {body}");
        assert!(
            body["expires_at"].as_i64().unwrap() > now() + 180,
            "{body}: {}",
            servers
                .iter()
                .map(Served::logs)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokens
            .entry(id)
            .or_default()
            .insert(body["access_token"].as_str().unwrap().to_owned());
        answered += 1;
    }
    assert_eq!(answered, 1000);
    let stats = sb.emulator.stats();
    assert_eq!(stats.reuse_attempts, 0, "{stats:?}");
    assert!(stats.revoked_grants.is_empty(), "{stats:?}");
    assert_eq!(
        stats.refreshes, 8,
        "one refresh per expiring account: {stats:?}"
    );
    for grant in &stats.grants {
        assert_eq!(grant.refreshes, 1, "{grant:?}");
    }
    // Every caller of an account got the same token, the one now stored.
    for id in &ids {
        let served = &tokens[id];
        assert_eq!(
            served.len(),
            1,
            "account {id} served {} tokens",
            served.len()
        );
        let stored = sb.run(&["token", &id.to_string()]).await;
        stored.ok();
        assert_eq!(
            served.first().unwrap(),
            stored.stdout.trim(),
            "account {id}"
        );
    }
    assert_eq!(sb.emulator.stats().refreshes, 8);

    let mut unavailable = 0.0;
    let mut fallbacks = 0.0;
    let mut refreshed = 0.0;
    for server in &servers {
        let samples = scrape(&server.url).await;
        fallbacks += metric(
            &samples,
            "oauth_refresh_lock_fallbacks_total",
            &[("from", "redis")],
        );
        unavailable += metric(
            &samples,
            "oauth_refresh_lock_unavailable_total",
            &[("layer", "redis")],
        );
        refreshed += metric(
            &samples,
            "oauth_refresh_refreshes_total",
            &[("outcome", "refreshed")],
        );
    }
    assert_eq!(
        refreshed, 8.0,
        "the processes' counters agree with the emulator"
    );
    if kill_redis_first {
        assert!(
            unavailable >= 1.0,
            "Redis was down: the database lease took over"
        );
        assert_eq!(
            fallbacks, unavailable,
            "each unavailable Redis lease fell to the database lease"
        );
    } else {
        assert_eq!(unavailable, 0.0);
        assert_eq!(fallbacks, 0.0);
    }
    for mut server in servers {
        server.signal("-TERM");
        let status = server.wait().await;
        assert!(status.success(), "{status:?}: {}", server.logs());
        assert_no_secret(&sb.emulator, &server.logs(), "a serve log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
#[ignore = "needs services: cargo xtask test"]
async fn three_serve_processes_on_postgres_and_redis_refresh_each_expiry_once() {
    hammer("hammer_redis", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
#[ignore = "needs services: cargo xtask test"]
async fn three_serve_processes_with_redis_killed_first_fall_back_to_the_database_lease() {
    hammer("hammer_redis_killed", true).await;
}
