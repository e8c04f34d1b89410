//! The login-session conformance suite catches real store bugs: a take
//! that reads and then removes (two steps) lets concurrent takes all win,
//! and a store that ignores expiry hands out an expired session. Each
//! broken store wraps the in-memory one; the control runs the wrapper
//! without its bug and passes.

mod common;

use std::future::{Future, ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::t0;
use refresh_core::StorageError;
use refresh_core::memory::InMemoryLoginSessionStore;
use refresh_core::ports::{Clock, LoginSessionStore, LoginTake, ManualClock, PendingLogin};
use refresh_core::testing::conformance::login_session_store_suite;

#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    /// `take` reads, yields, then removes: not atomic.
    TwoStepTake,
    /// `take` returns expired sessions as taken.
    IgnoresExpiry,
}

struct Broken {
    inner: InMemoryLoginSessionStore,
    /// What the two-step take reads: the sessions put, by id.
    seen: Mutex<Vec<PendingLogin>>,
    bug: Bug,
}

#[async_trait]
impl LoginSessionStore for Broken {
    async fn put(
        &self,
        login: &PendingLogin,
        ttl: Duration,
    ) -> Result<DateTime<Utc>, StorageError> {
        let at = self.inner.put(login, ttl).await?;
        self.seen.lock().unwrap().push(login.clone());
        Ok(at)
    }

    async fn take(&self, id: &str) -> Result<LoginTake, StorageError> {
        let known = || {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.id == id)
                .cloned()
        };
        match self.bug {
            Bug::None => self.inner.take(id).await,
            Bug::TwoStepTake => {
                let present = !self.inner.is_empty() && known().is_some();
                tokio::task::yield_now().await;
                let taken = self.inner.take(id).await?;
                Ok(match (present, taken) {
                    (true, LoginTake::Absent) => LoginTake::Taken(known().unwrap()),
                    (_, other) => other,
                })
            }
            Bug::IgnoresExpiry => Ok(match self.inner.take(id).await? {
                LoginTake::Expired => LoginTake::Taken(known().unwrap()),
                other => other,
            }),
        }
    }

    async fn purge(&self, limit: usize) -> Result<u64, StorageError> {
        self.inner.purge(limit).await
    }
}

fn make(
    clock: &Arc<ManualClock>,
    bug: Bug,
) -> impl Fn() -> std::future::Ready<Arc<dyn LoginSessionStore>> {
    let clock = Arc::clone(clock);
    move || {
        ready(Arc::new(Broken {
            inner: InMemoryLoginSessionStore::new(Arc::clone(&clock) as Arc<dyn Clock>),
            seen: Mutex::new(Vec::new()),
            bug,
        }) as Arc<dyn LoginSessionStore>)
    }
}

async fn failure_of(suite: impl Future<Output = ()> + Send + 'static) -> String {
    let err = tokio::spawn(suite)
        .await
        .expect_err("the suite must fail on a broken store");
    let payload = err.into_panic();
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(_) => "(no message)".to_owned(),
    }
}

async fn failure(bug: Bug) -> String {
    let clock = Arc::new(ManualClock::new(t0()));
    failure_of(async move { login_session_store_suite(make(&clock, bug), &clock).await }).await
}

#[tokio::test(start_paused = true)]
async fn the_wrapper_without_its_bug_passes() {
    let clock = Arc::new(ManualClock::new(t0()));
    login_session_store_suite(make(&clock, Bug::None), &clock).await;
}

#[tokio::test(start_paused = true)]
async fn a_two_step_take_fails_the_race_check() {
    let message = failure(Bug::TwoStepTake).await;
    assert!(
        message.starts_with("login_session_store_suite: concurrent_takes_have_one_winner"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_ignoring_expiry_fails_the_expiry_check() {
    let message = failure(Bug::IgnoresExpiry).await;
    assert!(
        message.starts_with("login_session_store_suite: an_expired_session_is_never_taken"),
        "{message}"
    );
}
