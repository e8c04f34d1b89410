//! The status page's accounts page at 10 000 accounts: one `oauth-refresh
//! serve` on its own PostgreSQL database (10 000 accounts, a quarter of
//! them OpenAI, five refresh events each in `refresh_events`), a logged-in
//! session, and `GET /accounts` pages (the first, one filtered by platform
//! and status, the first by expiry, a late one) each `N` times, one after
//! another on a keep-alive connection. Server time is the page's
//! `Server-Timing: app;dur=` (route to response built); client time is the
//! whole request on loopback.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use refresh_facade::{AccountType, Credentials, NewAccount, Platform};
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::env::{Db, Env};
use crate::stats::{Summary, ns, summarize};

const API_KEY: &str = "bench-api-key-accounts-page";
/// Accounts in the database.
const ACCOUNTS: usize = 10_000;
/// Refresh events stored per account.
const EVENTS_PER_ACCOUNT: usize = 5;

/// One page's measurement.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct PageTiming {
    pub(crate) name: String,
    pub(crate) path: String,
    /// Rows the page showed.
    pub(crate) rows: usize,
    /// `Server-Timing` (ns).
    pub(crate) server: Summary,
    /// The whole request on loopback (ns).
    pub(crate) client: Summary,
}

#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct AccountsPage {
    pub(crate) accounts: usize,
    pub(crate) events: usize,
    pub(crate) page_size: usize,
    pub(crate) requests_per_page: usize,
    pub(crate) pages: Vec<PageTiming>,
}

impl AccountsPage {
    /// The slowest page's server-time p99 (ns).
    pub(crate) fn worst_server_p99_ns(&self) -> f64 {
        self.pages
            .iter()
            .map(|p| p.server.p99_ns)
            .fold(0.0, f64::max)
    }
}

pub(crate) async fn run(env: &Env, binary: &Path) -> Result<AccountsPage> {
    let db = env.database("accounts_page").await?;
    let result = measure(env, &db, binary).await;
    env.drop_database(db).await;
    result
}

async fn measure(env: &Env, db: &Db, binary: &Path) -> Result<AccountsPage> {
    let stack = env.stack(db, true).await?;
    fill(&stack).await?;
    let last_id = add_events(db).await?;
    drop(stack);

    let (mut child, addr) = crate::serve::spawn(env, db, binary, API_KEY).await?;

    let mut conn = Conn::open(&addr).await?;
    let session = log_in(&mut conn).await?;
    let cookie = format!("oauth_refresh_session={session}");
    let late = last_id - 25;
    let pages = [
        ("first page", "/accounts".to_owned()),
        (
            "filtered (platform=openai, status=active)",
            "/accounts?platform=openai&status=active".to_owned(),
        ),
        ("by expiry, first page", "/accounts?sort=expiry".to_owned()),
        ("late page (after id)", format!("/accounts?after={late}")),
    ];
    let n = if env.quick { 50 } else { 300 };
    let mut out = AccountsPage {
        accounts: ACCOUNTS,
        events: ACCOUNTS * EVENTS_PER_ACCOUNT,
        page_size: 50,
        requests_per_page: n,
        pages: Vec::new(),
    };
    for (name, path) in pages {
        // Warm-up: pools, caches, the database's buffers.
        for _ in 0..5 {
            conn.get(&path, &cookie).await?;
        }
        let (mut server, mut client) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut rows = 0;
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let page = conn.get(&path, &cookie).await?;
            client.push(ns(t.elapsed()));
            if page.status != 200 {
                bail!("{path}: status {}", page.status);
            }
            let dur = page
                .server_ms
                .with_context(|| format!("{path}: no Server-Timing header"))?;
            server.push((dur * 1e6) as u64);
            rows = page.body.matches("<tr data-account=").count();
        }
        let wall = started.elapsed();
        out.pages.push(PageTiming {
            name: name.to_owned(),
            path,
            rows,
            server: summarize(server, 0, n as u64, wall),
            client: summarize(client, 0, n as u64, wall),
        });
    }
    let _ = child.kill().await;
    Ok(out)
}

/// 10 000 accounts: every fourth OpenAI, the rest Claude; expiries spread
/// over the next 8 hours.
async fn fill(stack: &refresh_facade::RefreshStack) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let mut batch = Vec::new();
    for i in 0..ACCOUNTS {
        let platform = if i % 4 == 0 {
            Platform::OpenAi
        } else {
            Platform::Anthropic
        };
        let credentials = Credentials::new()
            .with("access_token", format!("at-page-{i}-{}", fastrand::u64(..)))
            .with(
                "refresh_token",
                format!("rt-page-{i}-{}", fastrand::u64(..)),
            )
            .with(
                "expires_at",
                (now + 3600 + fastrand::i64(0..7 * 3600)).to_string(),
            );
        batch.push(NewAccount::new(
            format!("page-{i:05}"),
            platform,
            AccountType::OAuth,
            credentials,
        ));
        if batch.len() == 2_000 {
            stack.import(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        stack.import(batch).await?;
    }
    Ok(())
}

/// Five events per account in the last hours (multi-row INSERTs); returns
/// the last account id.
async fn add_events(db: &Db) -> Result<i64> {
    let conn = Database::connect(db.url.as_str()).await?;
    let backend = conn.get_database_backend();
    let ids: Vec<(i64, String)> = conn
        .query_all(Statement::from_string(
            backend,
            "SELECT id, platform FROM accounts ORDER BY id",
        ))
        .await?
        .iter()
        .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "platform")?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    for chunk in ids.chunks(200) {
        let mut rows = Vec::new();
        for (id, platform) in chunk {
            for k in 0..EVENTS_PER_ACCOUNT as i64 {
                let at = now_ms - (k + 1) * 600_000 - fastrand::i64(0..60_000);
                let hour = at / 1000 / 3600 * 3600;
                rows.push(format!(
                    "({id}, '{platform}', {at}, {hour}, 'refreshed', 150, 'redis+database', 1)"
                ));
            }
        }
        conn.execute(Statement::from_string(
            backend,
            format!(
                "INSERT INTO refresh_events (account_id, platform, at_ms, hour_s, outcome, \
                 duration_ms, lock_layer, attempts) VALUES {}",
                rows.join(", ")
            ),
        ))
        .await?;
    }
    conn.execute(Statement::from_string(backend, "ANALYZE"))
        .await?;
    conn.close().await.ok();
    ids.last().map(|x| x.0).context("no account")
}

/// `GET /login` for the form's double-submit token, then `POST /login`
/// with the key: the session cookie's value.
async fn log_in(conn: &mut Conn) -> Result<String> {
    let form = conn.request("GET", "/login", "", None).await?;
    let token = form
        .cookie("oauth_refresh_login")
        .context("no login form cookie")?;
    let body = format!("csrf={token}&key={API_KEY}");
    let answer = conn
        .request(
            "POST",
            "/login",
            &format!("oauth_refresh_login={token}"),
            Some(&body),
        )
        .await?;
    if answer.status != 303 {
        bail!("login answered {}", answer.status);
    }
    answer
        .cookie("oauth_refresh_session")
        .context("no session cookie")
}

/// An answer.
struct Answer {
    status: u16,
    set_cookies: Vec<String>,
    server_ms: Option<f64>,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k.trim() == name && !v.is_empty()).then(|| v.to_owned())
        })
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: addr.to_owned(),
        })
    }

    async fn get(&mut self, path: &str, cookie: &str) -> Result<Answer> {
        self.request("GET", path, cookie, None).await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        cookie: &str,
        body: Option<&str>,
    ) -> Result<Answer> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !cookie.is_empty() {
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or_default());
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("status line {line:?}"))?;
        let (mut length, mut set_cookies, mut server_ms) = (0usize, Vec::new(), None);
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse()?;
                } else if name.eq_ignore_ascii_case("set-cookie") {
                    set_cookies.push(value.to_owned());
                } else if name.eq_ignore_ascii_case("server-timing") {
                    server_ms = value
                        .split(';')
                        .find_map(|p| p.trim().strip_prefix("dur="))
                        .and_then(|d| d.parse().ok());
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Answer {
            status,
            set_cookies,
            server_ms,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
