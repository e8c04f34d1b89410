//! Per-account proxies: refreshes through a local HTTP proxy (CONNECT or
//! absolute-form forwarding, counted as tunnels) and a local SOCKS5 proxy
//! reach the emulator; with the proxy down the refresh fails typed and the
//! emulator sees nothing; one pooled client per distinct proxy.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use refresh_core::ProviderError;
use refresh_core::plugin::*;
use refresh_providers::HttpClients;
use refresh_providers::emulator::{EmulatedProvider, Emulator, GrantSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A tiny SOCKS5 proxy (no authentication, CONNECT only) on 127.0.0.1.
async fn socks5_proxy() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("socks5://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let _ = socks5_tunnel(client, counter).await;
            });
        }
    });
    (url, seen)
}

async fn socks5_tunnel(mut client: TcpStream, seen: Arc<Seen>) -> std::io::Result<()> {
    let mut greeting = [0_u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0_u8; greeting[1] as usize];
    client.read_exact(&mut methods).await?;
    client.write_all(&[5, 0]).await?;
    let Some((_, host, port)) = socks5_target(&mut client).await? else {
        return Ok(());
    };
    let mut upstream = TcpStream::connect((host.as_str(), port)).await?;
    seen.tunnels.fetch_add(1, Ordering::SeqCst);
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_through_http_and_socks5_proxies_reach_the_emulator() {
    for (kind, (proxy_url, seen)) in [
        ("http", http_proxy().await),
        ("socks5", socks5_proxy().await),
    ] {
        let emu = Emulator::start().await.unwrap();
        for platform in &PLATFORMS {
            let grant = emu.seed(GrantSpec {
                project_id: Some("p".into()),
                ..GrantSpec::new(emulated(platform))
            });
            let rt = grant.refresh_token.expose();
            let account = with_proxy(account(platform, 1, rt), &proxy_url);
            let executor = executor_at(platform, &emu.url());
            let before = seen.tunnels.load(Ordering::SeqCst);
            let creds = executor
                .refresh(&account, &ctx(rt))
                .await
                .unwrap_or_else(|e| panic!("{kind} proxy, {platform}: {e:?}"));
            assert!(creds.access_token().is_some());
            assert!(
                seen.tunnels.load(Ordering::SeqCst) > before,
                "{kind} proxy, {platform}: the request went through the proxy"
            );
            assert_eq!(emu.grant(grant.grant_id).unwrap().refreshes, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_proxy_down_the_refresh_fails_typed_and_the_emulator_sees_nothing() {
    let emu = Emulator::start().await.unwrap();
    for platform in &PLATFORMS {
        for scheme in ["http", "socks5", "socks5h"] {
            let grant = emu.seed(GrantSpec::new(emulated(platform)));
            let rt = grant.refresh_token.expose();
            let down = format!("{scheme}://user:Pr0xyPassw0rdSecret@{}", closed_port());
            let account = with_proxy(account(platform, 2, rt), &down);
            let executor = executor_at(platform, &emu.url());
            let err = executor.refresh(&account, &ctx(rt)).await.unwrap_err();
            assert!(
                matches!(err, ProviderError::NotSent { .. }),
                "{scheme} proxy down, {platform}: {err:?}"
            );
            assert!(err.provably_not_consumed());
            assert_hides(
                &format!("{err} {err:?} {account:?}"),
                &["Pr0xyPassw0rdSecret", rt],
            );
        }
    }
    let stats = emu.stats();
    assert!(
        stats.requests_by_path.is_empty(),
        "no direct connection: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_with_credentials_gets_them_and_clients_are_pooled_per_proxy() {
    let emu = Emulator::start().await.unwrap();
    let (proxy_a, seen_a) = http_proxy().await;
    let (proxy_b, _seen_b) = http_proxy().await;
    let with_auth = proxy_a.replace("http://", "http://bob:s3cret@");
    let http = HttpClients::default();
    let executor = executor_with(&Platform::Anthropic, config_at(&emu.url()), http.clone());
    for (i, proxy) in [&with_auth, &with_auth, &proxy_b, &with_auth]
        .into_iter()
        .enumerate()
    {
        let grant = emu.seed(GrantSpec::new(EmulatedProvider::Claude));
        let rt = grant.refresh_token.expose();
        let account = with_proxy(account(&Platform::Anthropic, i as i64, rt), proxy);
        executor.refresh(&account, &ctx(rt)).await.unwrap();
    }
    let direct = emu.seed(GrantSpec::new(EmulatedProvider::Claude));
    let rt = direct.refresh_token.expose();
    executor
        .refresh(&account(&Platform::Anthropic, 9, rt), &ctx(rt))
        .await
        .unwrap();
    assert_eq!(
        http.clients_built(),
        3,
        "one client per distinct proxy (two) plus the direct one, reused across refreshes"
    );
    let auth = seen_a.authorization.lock().unwrap().clone();
    assert!(!auth.is_empty(), "the proxy got credentials");
    assert!(
        auth.iter().all(|a| a == "Basic Ym9iOnMzY3JldA=="),
        "{auth:?}"
    );
    assert!(!format!("{http:?}").contains("s3cret"));
}

#[test]
fn a_proxy_url_with_a_bad_scheme_is_a_typed_error() {
    for bad in [
        "ftp://10.0.0.1:21",
        "socks4://10.0.0.1:1080",
        "10.0.0.1:3128",
        "http://u:pw@h/x",
    ] {
        let err = bad.parse::<refresh_core::ProxyUrl>().unwrap_err();
        assert!(
            matches!(err, refresh_core::DomainError::InvalidProxyUrl { .. }),
            "{bad}: {err:?}"
        );
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
}
