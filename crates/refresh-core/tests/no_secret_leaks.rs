//! Invariant 9 of DESIGN.md: tokens never appear in logs, in the `Display`
//! or `Debug` of errors and domain values, or in the stored `error_message`.
//!
//! Every event at TRACE level (span open/close included) is captured while
//! the flow, the token provider and the background refresher run through a
//! successful refresh, an `invalid_grant` whose upstream body echoes the
//! refresh token, a persist failure (`NotPersisted`, which carries the new
//! credentials, and the generation claim holding them), and a
//! lock-unavailable failure. The secrets are the distinctive seeded tokens
//! and every `rt-<id>-<n>` / `at-<id>-<n>` the fake upstream issued. A
//! second test has an executor put the refresh token into its own
//! `Configuration { reason }`, which must reach the `error_message` column
//! redacted.

mod common;

use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{ISSUED_LIFETIME, anthropic_executor, memory_lock, tokio_clock};
use refresh_core::memory::{
    InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock, InMemoryTokenCache,
};
use refresh_core::provider::REFRESH_SKEW;
use refresh_core::testing::{FakeUpstream, Faulty};
use refresh_core::{
    Account, AccountId, AccountRepository, AccountStatus, BackgroundRefresher, ClaimState,
    ClaimStore, Clock, Credentials, ExecutorRegistry, FlowError, LockStrategy, Platform,
    ProviderError, RefreshContext, RefreshExecutor, RefreshFlow, RefreshKey, RefreshLock,
    RefreshOutcome, StorageErrorKind, TokenCache, TokenError, TokenProvider,
};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Long enough (≥ 24 characters) to look like a real token to the
/// description sanitizer; the upstream echoes it in its error body.
const ECHOED_REFRESH_TOKEN: &str = "rt-SECRET-0002-echoed-by-the-upstream";
/// The same, for a nested error body.
const NESTED_ECHOED_REFRESH_TOKEN: &str = "rt-SECRET-0007-echoed-in-a-nested-body";

/// Everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(Arc::clone(&self.0))
    }
}

/// A TRACE-level fmt subscriber (span events included, no colours) writing
/// into a fresh [`LogBuffer`], the default for as long as the guard lives.
fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}

/// Text rendered from values and errors, with what it came from.
#[derive(Default)]
struct Rendered(Vec<(String, String)>);

impl Rendered {
    fn debug(&mut self, what: &str, value: &dyn std::fmt::Debug) {
        self.0
            .push((format!("{what} (Debug)"), format!("{value:?}")));
    }

    /// `Display` and `Debug` of an error and the `Display` of its sources.
    fn error(&mut self, what: &str, error: &(dyn std::error::Error + 'static)) {
        self.0
            .push((format!("{what} (Display)"), error.to_string()));
        self.0
            .push((format!("{what} (Debug)"), format!("{error:?}")));
        let mut source = error.source();
        while let Some(cause) = source {
            self.0
                .push((format!("{what} (source Display)"), cause.to_string()));
            source = cause.source();
        }
    }

    fn text(&mut self, what: &str, text: &str) {
        self.0.push((what.to_owned(), text.to_owned()));
    }
}

/// An OAuth Claude account holding `at-SECRET-000<n>` / `rt-SECRET-000<n>`
/// (or `refresh_token` when given) that expires `expires_in` seconds from
/// `now`.
fn account(
    id: i64,
    n: u32,
    refresh_token: Option<&str>,
    now: DateTime<Utc>,
    expires_in: i64,
) -> Account {
    let credentials = Credentials::new()
        .with("access_token", format!("at-SECRET-000{n}"))
        .with(
            "refresh_token",
            refresh_token.map_or_else(|| format!("rt-SECRET-000{n}"), str::to_owned),
        )
        .with("expires_at", (now.timestamp() + expires_in).to_string())
        .with("token_type", "Bearer");
    Account::oauth(id, Platform::Anthropic, credentials)
}

struct Stack {
    flow: RefreshFlow,
    provider: TokenProvider,
}

fn stack(
    repo: Arc<dyn AccountRepository>,
    lock: Arc<dyn RefreshLock>,
    claims: Arc<dyn ClaimStore>,
    cache: &Arc<InMemoryTokenCache>,
    clock: &Arc<dyn Clock>,
    executor: &Arc<dyn RefreshExecutor>,
) -> Stack {
    let flow = RefreshFlow::builder(repo, LockStrategy::single(lock), claims)
        .notifier(Arc::clone(cache) as _)
        .clock(Arc::clone(clock))
        .build()
        .expect("valid flow configuration");
    let provider = TokenProvider::builder(
        flow.clone(),
        ExecutorRegistry::new().with(Arc::clone(executor)),
    )
    .shared_cache(Arc::clone(cache) as _)
    .build();
    Stack { flow, provider }
}

#[tokio::test(start_paused = true)]
async fn invariant_9_no_secret_in_logs_errors_or_error_message() {
    let (logs, _guard) = capture_logs();

    let clock = tokio_clock();
    let now = clock.now();
    let upstream = FakeUpstream::new();
    let executor = anthropic_executor(&upstream, ISSUED_LIFETIME);
    let cache = Arc::new(InMemoryTokenCache::new(Arc::clone(&clock)));
    let mut out = Rendered::default();

    // 1. A successful refresh through the flow (9001) and through the token
    //    provider (9005), then a warm token read.
    let repo1 = Arc::new(InMemoryAccountRepository::with_accounts([
        account(9001, 1, None, now, 60),
        account(9005, 5, None, now, 60),
    ]));
    let s1 = stack(
        Arc::clone(&repo1) as _,
        Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))),
        Arc::new(InMemoryClaimStore::new(Arc::clone(&clock))),
        &cache,
        &clock,
        &executor,
    );
    let a9001 = repo1.get(AccountId(9001)).await.unwrap().unwrap();
    out.debug("seeded Account", &a9001);
    out.debug("seeded Credentials", &a9001.credentials);
    let outcome = s1
        .flow
        .refresh_if_needed(&a9001, &executor, REFRESH_SKEW)
        .await;
    out.debug("RefreshOutcome", &outcome);
    let refreshed = match outcome {
        Ok(RefreshOutcome::Refreshed { account, .. }) => account,
        other => panic!("expected a refresh, got {other:?}"),
    };
    out.debug("refreshed Account", &refreshed);
    out.debug("refreshed Credentials", &refreshed.credentials);
    let token = s1.provider.access_token(&refreshed).await.expect("token");
    assert_eq!(
        token.token.expose(),
        "at-9001-1",
        "the secret checked below is live"
    );
    out.debug("AccessToken", &token);
    let a9005 = repo1.get(AccountId(9005)).await.unwrap().unwrap();
    let token = s1
        .provider
        .access_token(&a9005)
        .await
        .expect("token after a refresh");
    assert_eq!(token.token.expose(), "at-9005-1");
    out.debug("AccessToken", &token);
    let cached = cache
        .get(&RefreshKey::for_account(
            &Platform::Anthropic,
            AccountId(9005),
        ))
        .await
        .expect("in-memory cache")
        .expect("the provider cached the token");
    assert_eq!(cached.access_token.expose(), "at-9005-1");
    out.debug("CachedToken", &cached);
    let warm = s1.provider.access_token(&a9005).await.expect("warm token");
    out.debug("AccessToken (warm)", &warm);
    out.debug("TokenProvider", &s1.provider);
    out.debug("RefreshFlow", &s1.flow);

    // 2. invalid_grant in the background refresher; the upstream body echoes
    //    the refresh token in its description.
    let repo2 = Arc::new(InMemoryAccountRepository::with_accounts([account(
        9002,
        2,
        Some(ECHOED_REFRESH_TOKEN),
        now,
        60,
    )]));
    let s2 = stack(
        Arc::clone(&repo2) as _,
        Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))),
        Arc::new(InMemoryClaimStore::new(Arc::clone(&clock))),
        &cache,
        &clock,
        &executor,
    );
    let flat = format!(
        r#"{{"error":"invalid_grant","error_description":"Refresh token {ECHOED_REFRESH_TOKEN} was revoked"}}"#
    );
    upstream.fail_next(ProviderError::from_response(400, flat.as_bytes(), None));
    let background = BackgroundRefresher::builder(
        s2.flow.clone(),
        ExecutorRegistry::new().with(Arc::clone(&executor)),
    )
    .cache(Arc::clone(&cache) as _)
    .build()
    .expect("valid background configuration");
    let report = background.run_once().await;
    assert_eq!(report.marked_error, 1, "{report:?}");
    out.debug("CycleReport", &report);
    let marked = repo2.get(AccountId(9002)).await.unwrap().unwrap();
    assert_eq!(marked.status, AccountStatus::Error);
    let error_message = marked.error_message.clone().expect("error_message written");
    assert!(error_message.contains("invalid_grant"), "{error_message}");
    assert!(
        !error_message.contains("error_description"),
        "raw body stored: {error_message}"
    );
    out.text("error_message column", &error_message);
    out.debug("Account marked error", &marked);
    // The refused generation is dead: presenting it again is refused
    // without a call.
    let calls = upstream.calls();
    let error = s2
        .flow
        .refresh_if_needed(&marked, &executor, REFRESH_SKEW)
        .await
        .expect_err("a dead generation is not presented again");
    assert!(
        matches!(error, FlowError::CredentialsRegressed { .. }),
        "{error:?}"
    );
    assert_eq!(upstream.calls(), calls);
    out.error("FlowError::CredentialsRegressed", &error);
    out.text("account_error_message", &error.account_error_message());
    let repo7 = Arc::new(InMemoryAccountRepository::with_accounts([account(
        9007,
        7,
        Some(NESTED_ECHOED_REFRESH_TOKEN),
        now,
        -60,
    )]));
    let s7 = stack(
        Arc::clone(&repo7) as _,
        Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))),
        Arc::new(InMemoryClaimStore::new(Arc::clone(&clock))),
        &cache,
        &clock,
        &executor,
    );
    let a9007 = repo7.get(AccountId(9007)).await.unwrap().unwrap();
    let nested = format!(
        r#"{{"error":{{"code":"refresh_token_reused","message":"token {NESTED_ECHOED_REFRESH_TOKEN} already used"}}}}"#
    );
    upstream.fail_next(ProviderError::from_response(401, nested.as_bytes(), None));
    let error = s7
        .flow
        .refresh_if_needed(&a9007, &executor, REFRESH_SKEW)
        .await
        .expect_err("invalid_grant stands: the stored token did not change");
    assert!(
        matches!(&error, FlowError::Upstream { source, .. } if source.is_grant_rejected()),
        "{error:?}"
    );
    out.error("FlowError::Upstream", &error);
    out.text("account_error_message", &error.account_error_message());

    // 3. The upstream rotates but every write fails: NotPersisted carries the
    //    new credentials, and the generation claim keeps them.
    let repo3 = Arc::new(Faulty::new(Arc::new(
        InMemoryAccountRepository::with_accounts([account(9003, 3, None, now, 60)]),
    )));
    repo3
        .faults
        .fail_always("compare_and_set_credentials", StorageErrorKind::Unavailable);
    let claims3 = Arc::new(InMemoryClaimStore::new(Arc::clone(&clock)));
    let s3 = stack(
        Arc::clone(&repo3) as _,
        Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))),
        Arc::clone(&claims3) as _,
        &cache,
        &clock,
        &executor,
    );
    let a9003 = repo3.inner().get(AccountId(9003)).await.unwrap().unwrap();
    let error = s3
        .flow
        .refresh_if_needed(&a9003, &executor, REFRESH_SKEW)
        .await
        .expect_err("every write fails");
    match &error {
        FlowError::NotPersisted {
            credentials,
            answer_saved: true,
            ..
        } => {
            assert_eq!(
                credentials.refresh_token().expect("rotated").expose(),
                "rt-9003-1"
            );
            out.debug("NotPersisted credentials", credentials);
        }
        other => panic!("expected NotPersisted with the answer in the claim, got {other:?}"),
    }
    out.error("FlowError::NotPersisted", &error);
    let answered = claims3.claims_of(AccountId(9003), ClaimState::Answered);
    let [claim] = answered.as_slice() else {
        panic!("one answered claim expected, got {answered:?}");
    };
    assert_eq!(
        claim
            .answer
            .as_ref()
            .and_then(Credentials::access_token)
            .expect("the answer")
            .expose(),
        "at-9003-1"
    );
    out.debug("Claim", claim);
    out.debug("Claim answer", &claim.answer);
    out.debug("ClaimKey", &claim.key);
    out.text("ClaimKey (Display)", &claim.key.to_string());
    out.debug("InMemoryClaimStore", &claims3);
    // The provider serves the newest token there is: the one the upstream
    // issued, carried by the error (cached briefly, in-process only).
    let served = s3
        .provider
        .access_token(&a9003)
        .await
        .expect("the issued token is served");
    assert_eq!(served.token.expose(), "at-9003-1");
    out.debug("AccessToken (not yet persisted)", &served);
    // The same failure as a TokenError (Claude's policy would surface it once
    // no valid token is left).
    let error = TokenError::Refresh {
        id: AccountId(9003),
        source: error.clone(),
    };
    out.error("TokenError::Refresh(NotPersisted)", &error);

    // 4. No lock store answers.
    let now = clock.now();
    let repo4 = Arc::new(InMemoryAccountRepository::with_accounts([account(
        9004, 4, None, now, -30,
    )]));
    let lock4 = memory_lock(&clock);
    lock4
        .faults
        .fail_always("try_acquire", StorageErrorKind::Unavailable);
    let s4 = stack(
        Arc::clone(&repo4) as _,
        Arc::clone(&lock4) as _,
        Arc::new(InMemoryClaimStore::new(Arc::clone(&clock))),
        &cache,
        &clock,
        &executor,
    );
    let a9004 = repo4.get(AccountId(9004)).await.unwrap().unwrap();
    let error = s4
        .flow
        .refresh_if_needed(&a9004, &executor, REFRESH_SKEW)
        .await
        .expect_err("no lock");
    assert!(
        matches!(error, FlowError::LockUnavailable { .. }),
        "{error:?}"
    );
    out.error("FlowError::LockUnavailable", &error);
    let error = s4
        .provider
        .access_token(&a9004)
        .await
        .expect_err("no lock and an expired token");
    assert!(
        matches!(
            &error,
            TokenError::Refresh {
                source: FlowError::LockUnavailable { .. },
                ..
            }
        ),
        "{error:?}"
    );
    out.error("TokenError::Refresh(LockUnavailable)", &error);
    out.debug(
        "Account (lock unavailable)",
        &repo4.get(AccountId(9004)).await.unwrap().unwrap(),
    );

    // Every secret: the seeded ones and each token the upstream issued.
    assert_eq!(upstream.reuses(), 0);
    let mut secrets: Vec<String> = (1..=7)
        .flat_map(|n| [format!("at-SECRET-000{n}"), format!("rt-SECRET-000{n}")])
        .collect();
    secrets.push(ECHOED_REFRESH_TOKEN.to_owned());
    secrets.push(NESTED_ECHOED_REFRESH_TOKEN.to_owned());
    for id in 9001..=9007 {
        for n in 1..=3 {
            secrets.push(format!("at-{id}-{n}"));
            secrets.push(format!("rt-{id}-{n}"));
        }
    }

    let logs = logs.contents();
    assert!(
        !logs.trim().is_empty(),
        "nothing was logged: the log scan would prove nothing"
    );
    for expected in [
        "credentials refreshed and persisted",
        "account marked error",
        "refreshed upstream but not persisted",
        "refresh lock unavailable",
    ] {
        assert!(
            logs.contains(expected),
            "the log lacks {expected:?}:\n{logs}"
        );
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret} appears in the logs:\n{logs}"
        );
        for (what, text) in &out.0 {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} appears in {what}: {text}"
            );
        }
    }
}

/// A refresh token long and mixed enough to look like a real one to the
/// redaction (short test tokens such as `rt-1-0` are below its threshold).
const HANDED_REFRESH_TOKEN: &str = "rt-SECRET-0006-Handed-To-The-Executor";
/// A proxy password the executor embeds in a URL.
const PROXY_PASSWORD: &str = "Pr0xyPassw0rd-SECRET";

/// An executor with a bug: its configuration error carries the refresh
/// token it was handed and a proxy URL with a password.
struct LeakyReason;

#[async_trait]
impl RefreshExecutor for LeakyReason {
    fn platform(&self) -> Platform {
        Platform::Anthropic
    }

    async fn refresh(
        &self,
        _account: &Account,
        ctx: &RefreshContext,
    ) -> Result<Credentials, ProviderError> {
        Err(ProviderError::Configuration {
            reason: format!(
                "proxy http://user:{PROXY_PASSWORD}@proxy.internal:8080 refused refresh token {}",
                ctx.refresh_token.expose()
            ),
        })
    }
}

/// Issue 5 ("Also"): an executor-supplied `Configuration { reason }` that
/// contains token-like text reaches the `error_message` column redacted,
/// like an upstream description, and the logs of the failure carry none of
/// it either.
#[tokio::test(start_paused = true)]
async fn invariant_9_executor_reason_is_redacted_in_error_message() {
    let (logs, _guard) = capture_logs();

    let clock = tokio_clock();
    let now = clock.now();
    let repo = Arc::new(InMemoryAccountRepository::with_accounts([account(
        9006,
        6,
        Some(HANDED_REFRESH_TOKEN),
        now,
        60,
    )]));
    let cache = Arc::new(InMemoryTokenCache::new(Arc::clone(&clock)));
    let executor: Arc<dyn RefreshExecutor> = Arc::new(LeakyReason);
    let s = stack(
        Arc::clone(&repo) as _,
        Arc::new(InMemoryRefreshLock::new(Arc::clone(&clock))),
        Arc::new(InMemoryClaimStore::new(Arc::clone(&clock))),
        &cache,
        &clock,
        &executor,
    );
    let background = BackgroundRefresher::builder(s.flow, ExecutorRegistry::new().with(executor))
        .cache(Arc::clone(&cache) as _)
        .build()
        .expect("valid background configuration");

    let report = background.run_once().await;
    assert_eq!((report.failed, report.marked_error), (1, 1), "{report:?}");
    let marked = repo.get(AccountId(9006)).await.unwrap().unwrap();
    assert_eq!(marked.status, AccountStatus::Error);
    let message = marked.error_message.expect("error_message written");
    assert!(
        message.starts_with("Token refresh failed (non-retryable)"),
        "{message}"
    );
    assert!(message.contains("configuration"), "{message}");
    assert!(message.contains("[redacted]"), "{message}");
    assert!(
        message.contains("proxy") && message.contains("refused refresh token"),
        "the readable words stay: {message}"
    );

    let logs = logs.contents();
    assert!(
        logs.contains("account marked error"),
        "the log lacks the mark:\n{logs}"
    );
    for secret in [HANDED_REFRESH_TOKEN, PROXY_PASSWORD, "at-SECRET-0006"] {
        assert!(
            !message.contains(secret),
            "{secret} in error_message: {message}"
        );
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}
