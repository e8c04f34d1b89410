//! The warm token read of the request path: `TokenProvider::access_token_by_id`
//! for an account whose token this process already resolved (one in-process
//! lookup, no storage), on 1 task and on 16 tasks.
//!
//! `cargo bench -p refresh-core --features testing --bench warm_read`
//!
//! With `WARM_READ_COUNT=N` set, the bench binary instead performs N warm
//! reads and exits, for instruction counting under callgrind
//! (`valgrind --tool=callgrind <bench binary> --bench`, run once with N and
//! once with 2N: the difference over N is the cost of one read without the
//! setup).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use refresh_core::memory::{InMemoryAccountRepository, InMemoryClaimStore, InMemoryRefreshLock};
use refresh_core::testing::{FakeUpstream, RotatingExecutor};
use refresh_core::{
    Account, AccountId, Credentials, ExecutorRegistry, LockStrategy, Platform, RefreshFlow,
    TokenProvider,
};
use tokio::runtime::Runtime;

const ACCOUNTS: i64 = 1_000;

fn provider(rt: &Runtime) -> TokenProvider {
    let expires = (chrono::Utc::now() + chrono::Duration::hours(8)).timestamp();
    let accounts = (1..=ACCOUNTS).map(|id| {
        let credentials = Credentials::new()
            .with("access_token", format!("at-{id}"))
            .with("refresh_token", format!("rt-{id}"))
            .with("expires_at", expires.to_string());
        Account::oauth(id, Platform::Anthropic, credentials)
    });
    let repo = Arc::new(InMemoryAccountRepository::with_accounts(accounts));
    let flow = RefreshFlow::builder(
        repo,
        LockStrategy::single(Arc::new(InMemoryRefreshLock::default())),
        Arc::new(InMemoryClaimStore::single_process()),
    )
    .build()
    .expect("valid flow");
    let executor = RotatingExecutor::new(
        Platform::Anthropic,
        FakeUpstream::new(),
        Duration::from_secs(8 * 3600),
    );
    let provider =
        TokenProvider::builder(flow, ExecutorRegistry::new().with(Arc::new(executor))).build();
    rt.block_on(async {
        for id in 1..=ACCOUNTS {
            provider
                .access_token_by_id(AccountId(id))
                .await
                .expect("a valid stored token");
        }
    });
    provider
}

/// One warm read, polled to completion without a runtime: the warm path
/// never suspends.
fn read(provider: &TokenProvider, id: i64) -> refresh_core::AccessToken {
    let mut future = std::pin::pin!(provider.access_token_by_id(AccountId(id)));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(token) => token.expect("warm"),
        std::task::Poll::Pending => panic!("a warm read suspended"),
    }
}

fn warm_read(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let provider = provider(&rt);

    if let Some(count) = std::env::var("WARM_READ_COUNT")
        .ok()
        .and_then(|n| n.parse::<i64>().ok())
    {
        for i in 0..count {
            black_box(read(&provider, 1 + i % ACCOUNTS));
        }
        return;
    }

    let mut group = c.benchmark_group("warm_read");
    group.throughput(Throughput::Elements(1));
    group.bench_function("by_id_1_task", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ACCOUNTS;
            black_box(read(&provider, 1 + i))
        });
    });
    // 16 tasks on the runtime's 2 workers, each reading its own accounts;
    // reports the time per read over all tasks.
    group.throughput(Throughput::Elements(16));
    group.bench_function("by_id_16_tasks", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = (0..16)
                    .map(|t| {
                        let provider = provider.clone();
                        tokio::spawn(async move {
                            for i in 0..iters {
                                let id = 1 + (t * 61 + i as i64) % ACCOUNTS;
                                black_box(provider.access_token_by_id(AccountId(id)).await.ok());
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("reader");
                }
            });
            started.elapsed()
        });
    });
    group.finish();
}

/// The group `criterion_main!` runs (`criterion_group!` declares an
/// undocumented `pub fn`).
mod group {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::warm_read);
}

criterion_main!(group::benches);
