//! What the status-page browser tests share: a sandbox with the OAuth
//! emulator (in this process), a migrated SQLite database with imported
//! accounts, a real `oauth-refresh serve`, and headless Debian Chromium
//! driven through `chromedriver` with fantoccini. Screenshots go to
//! `<CARGO_TARGET_TMPDIR>/ui/<test>/`.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use refresh_facade::providers::emulator::{EmulatedProvider, Emulator, GrantSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The API key the tests log in with.
pub const KEY: &str = "ui-test-key-3f9c";
/// The upstream identity (Claude `email_address`) of `team-claude`.
pub const ALICE: &str = "alice@example.com";
/// The account whose name is markup.
pub const SCRIPT_NAME: &str = "<script>alert(1)</script>";

/// Only one browser at a time on a small machine.
static BROWSERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The path of the workspace binary `name`, beside the test executable's
/// directory (`target/<profile>/`), where `cargo test --workspace` puts it.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built: run `cargo xtask test`, or first: cargo build -p refresh-facade --bin oauth-refresh",
        path.display()
    );
    path
}

/// Polls `check` every 50 ms until it holds; panics after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running process killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The whole stage of one test.
pub struct Stage {
    pub name: &'static str,
    pub dir: tempfile::TempDir,
    pub emulator: Emulator,
    pub serve: Proc,
    pub url: String,
    pub shots: PathBuf,
    /// Every token value the pages must never show.
    pub secrets: std::sync::Mutex<Vec<String>>,
    pub browser: Option<Client>,
    driver: Option<Proc>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn entry(name: &str, platform: &str, refresh: &str, expires_at: i64, status: &str) -> Value {
    json!({
        "name": name,
        "platform": platform,
        "type": "oauth",
        "status": status,
        "credentials": {
            "access_token": format!("at-initial-{}", refresh.len() + name.len()),
            "refresh_token": refresh,
            "expires_at": expires_at.to_string(),
        },
        "extra": {},
        "proxy": null,
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Stage {
    /// The emulator (every provider URL pointed at it by
    /// `providers.base_url`; it records login requests, so
    /// [`verifiers`](Self::verifiers) sees the PKCE verifiers), a migrated
    /// database with four accounts (`team-claude` as [`ALICE`],
    /// `team-openai`, none due for the background refresher, `broken-account` with status `error`, and
    /// one named [`SCRIPT_NAME`]), `serve` with [`KEY`], and a browser.
    pub async fn new(name: &'static str) -> Self {
        let turn = BROWSERS.lock().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let emulator = Emulator::start().await.expect("emulator");
        emulator.record_requests(true);
        let url = emulator.url();
        std::fs::write(
            dir.path().join("oauth-refresh.toml"),
            format!(
                "[serve]\napi_keys = [\"{KEY}\"]\n\
                 [providers]\nbase_url = \"{url}\"\n"
            ),
        )
        .expect("config");
        let now = chrono::Utc::now().timestamp();
        let seeds: Vec<_> = [
            EmulatedProvider::Claude,
            EmulatedProvider::OpenAi,
            EmulatedProvider::Claude,
            EmulatedProvider::Claude,
        ]
        .into_iter()
        .map(|p| emulator.seed(GrantSpec::new(p)))
        .collect();
        let rt = |i: usize| seeds[i].refresh_token.expose().to_owned();
        let mut claude = entry("team-claude", "anthropic", &rt(0), now + 5400, "active");
        claude["extra"] = json!({ "email_address": ALICE });
        let accounts = json!([
            claude,
            entry("team-openai", "openai", &rt(1), now + 7200, "active"),
            entry("broken-account", "anthropic", &rt(2), now + 600, "error"),
            entry(SCRIPT_NAME, "anthropic", &rt(3), now + 3 * 3600, "active"),
        ]);
        let mut secrets: Vec<String> = (0..4).map(rt).collect();
        for a in accounts.as_array().expect("array") {
            secrets.push(
                a["credentials"]["access_token"]
                    .as_str()
                    .expect("at")
                    .to_owned(),
            );
        }
        std::fs::write(dir.path().join("accounts.json"), accounts.to_string()).expect("import");
        for args in [
            &["migrate"][..],
            &["accounts", "import", "accounts.json"][..],
        ] {
            let out = command(dir.path(), args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .await
                .expect("run oauth-refresh");
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
        let (serve, url) = start_serve(dir.path()).await;
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("ui")
            .join(name);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        let mut stage = Self {
            name,
            dir,
            emulator,
            serve,
            url,
            shots,
            secrets: std::sync::Mutex::new(secrets),
            browser: None,
            driver: None,
            _turn: turn,
        };
        stage.start_browser().await;
        stage
    }

    async fn start_browser(&mut self) {
        let port = free_port();
        let log = self.dir.path().join("chromedriver.log");
        let mut cmd = Command::new("chromedriver");
        // Its own process group: the browser it starts is in it too, and
        // dropping the stage (a failed test) kills the whole group.
        cmd.process_group(0);
        cmd.arg(format!("--port={port}"))
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .expect("chromedriver not found: apt-get install -y chromium chromium-driver");
        self.driver = Some(Proc { child, log });
        let driver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("chromedriver is ready", Duration::from_secs(30), || {
            let request = http.get(format!("{driver}/status")).send();
            async move {
                match request.await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            }
        })
        .await;
        let profile = self.dir.path().join("chromium-profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1280,900",
                    "--disable-crash-reporter", "--disable-breakpad",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver)
            .await
            .expect("a WebDriver session");
        self.browser = Some(client);
    }

    pub fn browser(&self) -> &Client {
        self.browser.as_ref().expect("browser")
    }

    /// Opens `path` and checks the page holds no token value.
    pub async fn visit(&self, path: &str) -> String {
        self.browser()
            .goto(&format!("{}{path}", self.url))
            .await
            .expect("goto");
        self.scan_page().await
    }

    /// The current page's source, checked for token values.
    pub async fn scan_page(&self) -> String {
        let source = self.browser().source().await.expect("page source");
        self.assert_no_secret(&source, "a page");
        source
    }

    #[track_caller]
    pub fn assert_no_secret(&self, text: &str, what: &str) {
        for token in self.emulator.issued_tokens() {
            assert!(
                !text.contains(token.expose()),
                "an issued token appears in {what}"
            );
        }
        for verifier in self.verifiers() {
            assert!(
                !text.contains(&verifier),
                "a PKCE verifier appears in {what}"
            );
        }
        let secrets = self.secrets.lock().expect("secrets").clone();
        for secret in secrets.iter().map(String::as_str).chain([KEY]) {
            assert!(
                !text.contains(secret),
                "a token or the API key appears in {what}"
            );
        }
    }

    /// Adds `value` (an authorization code) to what no page may show.
    pub fn forbid(&self, value: &str) {
        self.secrets.lock().expect("secrets").push(value.to_owned());
    }

    /// Every PKCE verifier the emulator received in a code exchange.
    pub fn verifiers(&self) -> Vec<String> {
        self.emulator
            .recorded_requests()
            .iter()
            .flat_map(|r| {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                let mut found: Vec<String> = url::form_urlencoded::parse(body.as_bytes())
                    .filter(|(k, _)| k == "code_verifier")
                    .map(|(_, v)| v.into_owned())
                    .collect();
                if let Ok(json) = serde_json::from_str::<Value>(&body)
                    && let Some(v) = json["code_verifier"].as_str()
                {
                    found.push(v.to_owned());
                }
                found
            })
            .collect()
    }

    /// Saves a PNG of the browser's window as `<shots>/<file>.png`.
    pub async fn screenshot(&self, file: &str) -> PathBuf {
        let png = self.browser().screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = self.shots.join(format!("{file}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Logs in through the form with `key`.
    pub async fn log_in(&self, key: &str) {
        self.visit("/login").await;
        let b = self.browser();
        b.find(Locator::Css("input[name=key]"))
            .await
            .expect("key field")
            .send_keys(key)
            .await
            .expect("type the key");
        b.find(Locator::Css("form.login button[type=submit]"))
            .await
            .expect("submit")
            .click()
            .await
            .expect("click");
        // The answer: another page, or the form again with a notice.
        eventually("the login answer", Duration::from_secs(10), || async {
            self.path().await != "/login" || b.find(Locator::Css("p.notice")).await.is_ok()
        })
        .await;
        self.scan_page().await;
    }

    /// The path of the current page.
    pub async fn path(&self) -> String {
        self.browser()
            .current_url()
            .await
            .expect("url")
            .path()
            .to_owned()
    }

    /// Kills chromedriver's process group (the browser with it).
    fn kill_driver(&mut self) {
        if let Some(driver) = self.driver.take()
            && let Some(pid) = driver.child.id()
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }

    /// Closes the browser and stops the processes; checks the serve log.
    pub async fn finish(mut self) {
        if let Some(browser) = self.browser.take() {
            browser.close().await.expect("close the session");
        }
        self.kill_driver();
        let _ = self.serve.child.kill().await;
        let logs = self.serve.logs();
        self.assert_no_secret(&logs, "the serve log");
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.kill_driver();
    }
}

/// `oauth-refresh ARGS` in `dir`, without inherited `OAUTH_REFRESH_*`.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("oauth-refresh"));
    cmd.args(args).current_dir(dir).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("OAUTH_REFRESH_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

async fn start_serve(dir: &Path) -> (Proc, String) {
    let log = dir.join("serve.log");
    let mut cmd = command(dir, &["serve", "--listen", "127.0.0.1:0"]);
    cmd.stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("serve starts within 60 s")
        .expect("read stdout")
        .unwrap_or_else(|| {
            panic!(
                "serve exited: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (Proc { child, log }, url)
}
