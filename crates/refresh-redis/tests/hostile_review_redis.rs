//! Hostile review of refresh-redis: tests that try to break `RedisLock`,
//! `RedisTokenCache` and `RedisConfig` against their port contracts
//! (refresh-core `ports::refresh_lock` / `ports::token_cache`, `# Contract`)
//! and the crate README.
//!
//! - Tests that only read/write their own keys use `REFRESH_TEST_REDIS_URL`
//!   with a unique prefix and delete their keys.
//! - Tests that stop, pause, flush, kill or reconfigure a server start their
//!   own throwaway `redis-server` (never the shared one).
//! - Cluster tests start their own 3-master cluster (`redis-server
//!   --cluster-enabled yes` + `redis-cli --cluster create`).
//!
//! Throwaway servers and prefixes come from `common`.

use std::process::Command;
use std::time::{Duration, Instant};

use refresh_core::memory::{InMemoryRefreshLock, InMemoryTokenCache};
use refresh_core::ports::{Lease, LeaseOwner, PutOutcome, RefreshLock, TokenCache};
use refresh_core::{RefreshKey, StorageError, StorageErrorKind};
use refresh_redis::{ConfigError, RedisBackend, RedisConfig};

mod common;

use common::{
    Deployment, OwnServer as Own, backend, delete_prefix, exec, key, raw, raw_key, server_url,
    timed_config, token, unique_prefix,
};

// ---------------------------------------------------------------- helpers

/// A backend on the shared server under a fresh prefix, and the prefix.
async fn shared(test: &str) -> (RedisBackend, String) {
    let redis = backend(Deployment::Single, test).await;
    let prefix = redis.config().key_prefix.clone();
    (redis, prefix)
}

/// A server of the test's own (`args` added to its command line) and a
/// backend on it under a fresh prefix.
async fn own(args: &[&str], test: &str, timeout: Duration) -> (Own, RedisBackend, String) {
    let server = Own::start_with(args).await;
    let prefix = unique_prefix(test);
    let redis = server.backend(&prefix, timeout).await;
    (server, redis, prefix)
}

/// Takes and releases a lease, so the lock's scripts are loaded (a first
/// EVALSHA answered NOSCRIPT would run nothing).
async fn load_scripts(lock: &impl RefreshLock) {
    let warm = lock
        .try_acquire(&key("warm"), Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert!(lock.release(&warm).await.unwrap());
}

/// Waits (at most `limit`) until `redis` answers PING again after SIGCONT.
async fn until_it_answers(redis: &RedisBackend, limit: Duration) {
    let deadline = Instant::now() + limit;
    while redis.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it holds or 5 s passed; whether it held. For state
/// a real server reaches on its own (a queued command runs, a TTL lapses),
/// never as a stand-in for a notification the code under test gives.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pttl(url: &str, key: &str) -> i64 {
    exec(&mut raw(url).await, ("PTTL", key)).await
}

// ------------------------------------------------------- lock: atomicity

/// A fence counter that is not a number (written by someone else, a bad
/// migration, a key collision) once made acquire.lua raise AFTER its `SET`:
/// Redis does not roll scripts back, so the lease stayed set to an owner the
/// caller never learned, refusing every acquirer for the whole TTL. Now
/// every read comes before the first write, and an unreadable counter counts
/// as lost (the fence falls back to the server clock floor): the acquire
/// succeeds, the lease is the caller's own, the counter is repaired, and
/// fences still grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_a_garbage_fence_counter_is_repaired_and_leaves_no_ghost_lease() {
    let (redis, prefix) = shared("ghost").await;
    let lock = redis.lock();
    let k = key("ghost");
    let mut c = raw(&server_url()).await;
    let before = lock
        .try_acquire(&k, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free");
    assert!(lock.release(&before).await.unwrap());
    let _: () = exec(
        &mut c,
        ("SET", raw_key(&prefix, "fence", &k), "not-a-number"),
    )
    .await;

    let first = lock
        .try_acquire(&k, Duration::from_secs(30))
        .await
        .expect("an unreadable counter is repaired, not an error")
        .expect("the lease is free");
    let counter: String = exec(&mut c, ("GET", raw_key(&prefix, "fence", &k))).await;
    let released = lock.release(&first).await.unwrap();
    let second = lock.try_acquire(&k, Duration::from_secs(30)).await;
    delete_prefix(Deployment::Single, &prefix).await;

    assert!(
        first.fence > before.fence,
        "{} > {}",
        first.fence,
        before.fence
    );
    assert_eq!(counter, first.fence.to_string(), "the counter was repaired");
    assert!(released, "the lease was the caller's own");
    let second = second.unwrap().expect("free again after the release");
    assert!(second.fence > first.fence);
}

/// The same with a fence counter of the wrong type (a hash: WRONGTYPE on
/// `GET`): repaired, no ghost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_a_fence_counter_of_the_wrong_type_is_repaired_and_leaves_no_ghost_lease() {
    let (redis, prefix) = shared("ghost-type").await;
    let lock = redis.lock();
    let k = key("ghost2");
    let mut c = raw(&server_url()).await;
    let _: i64 = exec(&mut c, ("HSET", raw_key(&prefix, "fence", &k), "x", "1")).await;
    let first = lock.try_acquire(&k, Duration::from_secs(30)).await;
    let released = match &first {
        Ok(Some(lease)) => lock.release(lease).await.unwrap(),
        _ => false,
    };
    let lease_left: Option<String> = exec(&mut c, ("GET", raw_key(&prefix, "lease", &k))).await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert!(matches!(first, Ok(Some(_))), "{first:?}");
    assert!(released, "the caller owned the lease it got");
    assert!(lease_left.is_none(), "no lease left behind");
}

// -------------------------------------------------------- lock: TTL edges

/// `Duration::MAX` (or any TTL past ~292 million years) is a natural
/// "forever"; the in-memory reference lock saturates and accepts it. Redis
/// gets `PX 18446744073709551615` (`px()` clamps to u64::MAX, past i64) and
/// the script fails: an `Other` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_huge_lease_ttl_is_accepted_like_the_reference_lock() {
    let memory = InMemoryRefreshLock::default();
    let m = memory
        .try_acquire(&key("huge"), Duration::MAX)
        .await
        .unwrap()
        .expect("memory: free");
    assert!(memory.extend(&m, Duration::MAX).await.unwrap());

    let (redis, prefix) = shared("huge-ttl").await;
    let lock = redis.lock();
    let acquired = lock.try_acquire(&key("huge"), Duration::MAX).await;
    // A sane lease, then extended with a huge TTL.
    let lease = lock
        .try_acquire(&key("huge2"), Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let extended = lock.extend(&lease, Duration::MAX).await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert!(
        matches!(acquired, Ok(Some(_))),
        "try_acquire(Duration::MAX): {acquired:?}"
    );
    assert!(
        matches!(extended, Ok(true)),
        "extend(Duration::MAX): {extended:?}"
    );
}

/// A zero TTL: the reference lock's lease lapses at once (a second acquire
/// succeeds); Redis rounds it up to `PX 1` and holds it for a millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_zero_ttl_lease_lapses_at_once_like_the_reference_lock() {
    let memory = InMemoryRefreshLock::default();
    assert!(
        memory
            .try_acquire(&key("z"), Duration::ZERO)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        memory
            .try_acquire(&key("z"), Duration::ZERO)
            .await
            .unwrap()
            .is_some(),
        "reference: a zero-TTL lease has lapsed"
    );
    let (redis, prefix) = shared("zero-ttl").await;
    let lock = redis.lock();
    let a = lock.try_acquire(&key("z"), Duration::ZERO).await.unwrap();
    let b = lock.try_acquire(&key("z"), Duration::ZERO).await.unwrap();
    delete_prefix(Deployment::Single, &prefix).await;
    assert!(a.is_some());
    assert!(
        b.is_some(),
        "redis: a zero-TTL lease is still held by the next call (PX 0 became PX 1)"
    );
}

/// Sub-millisecond TTLs never reach Redis as `PX 0` (an error there), and a
/// 1 ms lease lapses; extend with a smaller TTL shortens the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_sub_millisecond_and_shrinking_ttls_work() {
    let (redis, prefix) = shared("subms").await;
    let lock = redis.lock();
    for ttl in [
        Duration::from_nanos(1),
        Duration::from_micros(999),
        Duration::from_millis(1),
    ] {
        let k = key(&format!("subms-{}", ttl.as_nanos()));
        let lease = lock.try_acquire(&k, ttl).await.unwrap().expect("free");
        let _ = lock
            .extend(&lease, Duration::from_micros(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            lock.try_acquire(&k, Duration::from_secs(1))
                .await
                .unwrap()
                .is_some(),
            "{ttl:?} lapsed"
        );
    }
    // Extend with a smaller TTL.
    let k = key("shrink");
    let lease = lock
        .try_acquire(&k, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(
        lock.extend(&lease, Duration::from_millis(50))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        lock.try_acquire(&k, Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
    delete_prefix(Deployment::Single, &prefix).await;
}

// -------------------------------------------------------- lock: owners

/// Forged owners with odd bytes (empty, NUL, Lua-pattern characters,
/// multi-byte, very long, the owner's prefix/suffix) never release or
/// extend a lease, nor a missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_forged_owners_with_odd_bytes_never_release_or_extend() {
    let (redis, prefix) = shared("owners").await;
    let other = RedisBackend::connect(redis.config().clone()).await.unwrap();
    let (a, b) = (redis.lock(), other.lock());
    let k = key("o");
    let lease = a
        .try_acquire(&k, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let real = lease.owner.as_str().to_owned();
    let forged_owners = vec![
        String::new(),
        "\0".into(),
        format!("{real}\0"),
        real[..real.len() - 1].to_owned(),
        format!("{real} "),
        real.to_uppercase(),
        ".*".into(),
        "%a+".into(),
        "false".into(),
        "nil".into(),
        "é€😀".into(),
        "x".repeat(100_000),
    ];
    for forged in &forged_owners {
        let mut f = lease.clone();
        f.owner = LeaseOwner::from_raw(forged.as_str());
        assert!(!b.extend(&f, Duration::from_secs(30)).await.unwrap());
        assert!(!b.release(&f).await.unwrap());
    }
    assert!(
        b.try_acquire(&k, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
    );
    // A lease for a missing key, with an empty owner.
    let ghost = Lease {
        key: key("never-taken"),
        owner: LeaseOwner::from_raw(""),
        fence: 1,
        ttl: Duration::from_secs(1),
    };
    assert!(!b.release(&ghost).await.unwrap());
    assert!(!b.extend(&ghost, Duration::from_secs(1)).await.unwrap());
    // A lease of another prefix never touches this one.
    let third = RedisBackend::connect(
        redis
            .config()
            .clone()
            .with_prefix(format!("{prefix}-other")),
    )
    .await
    .unwrap();
    assert!(!third.lock().release(&lease).await.unwrap());
    assert!(a.release(&lease).await.unwrap());
    delete_prefix(Deployment::Single, &prefix).await;
}

// -------------------------------------------------------- lock: fences

/// Strictly increasing fences across: two backends with different configs
/// on one prefix, DEL of the lease, DEL of the counter, FLUSHALL, lapse,
/// and a restart (own server, no persistence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_fences_strictly_increase_across_flushall_restart_and_backends() {
    let mut server = Own::start().await;
    let prefix = unique_prefix("fences");
    let a = server
        .backend(&prefix, Duration::from_millis(300))
        .await
        .lock();
    let b = server.backend(&prefix, Duration::from_secs(2)).await.lock();
    let k = key("f");
    let mut last = 0u64;
    for round in 0..40 {
        let lock = if round % 2 == 0 { &a } else { &b };
        let lease = loop {
            match lock.try_acquire(&k, Duration::from_millis(50)).await {
                Ok(Some(l)) => break l,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert!(
            lease.fence > last,
            "round {round}: {} after {last}",
            lease.fence
        );
        last = lease.fence;
        let mut c = raw(&server.url()).await;
        match round % 5 {
            0 => assert!(lock.release(&lease).await.unwrap()),
            1 => {
                let _: i64 = exec(&mut c, ("DEL", raw_key(&prefix, "lease", &k))).await;
            }
            2 => {
                let _: () = exec(&mut c, "FLUSHALL").await;
            }
            3 => tokio::time::sleep(Duration::from_millis(80)).await,
            _ => server.restart().await,
        }
    }
}

// ------------------------------------------------- command timeout: SIGSTOP

async fn within<T: std::fmt::Debug>(
    what: &str,
    bound: Duration,
    call: impl std::future::Future<Output = Result<T, StorageError>>,
) -> StorageErrorKind {
    let start = Instant::now();
    let r = tokio::time::timeout(bound * 4, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung past {:?}", bound * 4));
    let took = start.elapsed();
    assert!(took <= bound, "{what} took {took:?} (bound {bound:?})");
    match r {
        Err(e) => e.kind(),
        Ok(v) => panic!("{what} succeeded against a stopped server: {v:?}"),
    }
}

/// A server frozen with SIGSTOP: every operation fails `Timeout` (or
/// `Unavailable`) within the command timeout, never hangs. After SIGCONT the
/// replies of the timed-out commands (which the server then executes) never
/// get mixed up with later commands' replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_stopped_server_times_out_every_op_and_replies_never_mix_after_resume() {
    let timeout = Duration::from_millis(300);
    let (server, redis, _) = own(&[], "sigstop", timeout).await;
    let (lock, cache) = (redis.lock(), redis.token_cache());
    let k = key("s");
    redis.ping().await.unwrap();
    let lease = lock
        .try_acquire(&k, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    cache
        .put(&k, &token("at-1", 1), Duration::from_secs(60))
        .await
        .unwrap();
    let _warm = cache.subscribe_refreshed(&key("warm")).await.unwrap();

    server.signal("-STOP");
    let bound = timeout + Duration::from_millis(150);
    let sub_bound = Duration::from_secs(2) + timeout * 2 + Duration::from_millis(150);
    let mut kinds = Vec::new();
    kinds.push(within("ping", bound, redis.ping()).await);
    kinds.push(
        within(
            "acquire",
            bound,
            lock.try_acquire(&key("t"), Duration::from_secs(30)),
        )
        .await,
    );
    kinds.push(
        within(
            "extend",
            bound,
            lock.extend(&lease, Duration::from_secs(30)),
        )
        .await,
    );
    kinds.push(within("release", bound, lock.release(&lease)).await);
    kinds.push(within("get", bound, cache.get(&k)).await);
    kinds.push(
        within(
            "put",
            bound,
            cache.put(&k, &token("at-2", 2), Duration::from_secs(60)),
        )
        .await,
    );
    kinds.push(within("invalidate", bound, cache.invalidate(&key("other"))).await);
    kinds.push(within("publish", bound, cache.publish_refreshed(&k, 2)).await);
    kinds.push(within("subscribe", sub_bound, cache.subscribe_refreshed(&k)).await);
    for kind in &kinds {
        assert!(
            matches!(
                kind,
                StorageErrorKind::Timeout | StorageErrorKind::Unavailable
            ),
            "{kinds:?}"
        );
    }
    server.signal("-CONT");

    // The same objects, interleaved commands of different reply types: each
    // gets its own reply.
    until_it_answers(&redis, Duration::from_secs(10)).await;
    for i in 0..50u64 {
        let kk = key(&format!("mix-{i}"));
        let t = token(&format!("at-{i}"), i);
        let (p, g, l) = tokio::join!(
            cache.put(&kk, &t, Duration::from_secs(60)),
            cache.get(&k),
            lock.try_acquire(&kk, Duration::from_secs(30)),
        );
        assert_eq!(p.unwrap(), PutOutcome::Stored);
        let got = g.unwrap().expect("cached");
        // The put of version 2 timed out, but the server ran it after the
        // resume: version 1 or 2, never another key's token.
        assert!(got.version <= 2 && got.access_token.expose().starts_with("at-"));
        assert!(l.unwrap().is_some());
    }
}

/// An acquire that times out (server frozen longer than the command
/// timeout) is still executed by Redis once it resumes: the lease is then
/// held by the random owner the caller generated and threw away. Nobody can
/// release it; every acquirer gets `Ok(None)` ("held elsewhere", so the
/// layered strategy does NOT fall back to the database lease) for the whole
/// lease TTL (flow default 180 s, as long as the provider's refresh skew),
/// and no holder will ever publish "refreshed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_timed_out_acquire_leaves_no_ghost_lease_after_the_server_resumes() {
    let timeout = Duration::from_millis(200);
    let (server, redis, prefix) = own(&[], "ghost-timeout", timeout).await;
    let lock = redis.lock();
    let k = key("g");
    load_scripts(&lock).await;
    server.signal("-STOP");
    let first = lock.try_acquire(&k, Duration::from_secs(180)).await;
    server.signal("-CONT");
    assert_eq!(
        first.as_ref().err().map(StorageError::kind),
        Some(StorageErrorKind::Timeout),
        "{first:?}"
    );
    until_it_answers(&redis, Duration::from_secs(5)).await;
    let lease_key = raw_key(&prefix, "lease", &k);
    let cleared = eventually(|| async { pttl(&server.url(), &lease_key).await == -2 }).await;
    let ttl = pttl(&server.url(), &lease_key).await;
    let other = RedisBackend::connect(redis.config().clone()).await.unwrap();
    let second = other.lock().try_acquire(&k, Duration::from_secs(5)).await;
    assert!(
        cleared && matches!(second, Ok(Some(_))),
        "after a TIMED-OUT acquire the key is held by nobody-known for {ttl} ms: {second:?}"
    );
}

/// The caller's own deadline fires before the command timeout (core's
/// storage deadline, a dropped request) while the server is frozen: the
/// acquire future is dropped, not answered. The script still runs when the
/// server resumes; the lease it takes must not outlive the cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cancelled_acquire_leaves_no_ghost_lease_after_the_server_resumes() {
    let (server, redis, prefix) = own(&[], "ghost-cancel", Duration::from_secs(10)).await;
    let lock = redis.lock();
    let k = key("c");
    load_scripts(&lock).await;
    server.signal("-STOP");
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        lock.try_acquire(&k, Duration::from_secs(180)),
    )
    .await;
    server.signal("-CONT");
    assert!(
        cancelled.is_err(),
        "the caller gave up first: {cancelled:?}"
    );
    let lease_key = raw_key(&prefix, "lease", &k);
    // The queued acquire runs after the resume, then its cleanup.
    let cleared = eventually(|| async { pttl(&server.url(), &lease_key).await == -2 }).await;
    let second = lock.try_acquire(&k, Duration::from_secs(5)).await;
    assert!(cleared, "a cancelled acquire left a lease nobody knows");
    assert!(matches!(second, Ok(Some(_))), "{second:?}");
}

/// A release that times out while the server is frozen: is it executed once
/// the server resumes (owner-checked, harmless), or dropped with the
/// connection (the lease then blocks the key for its whole TTL)?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_timed_out_release_is_not_lost() {
    let timeout = Duration::from_millis(200);
    let (server, redis, prefix) = own(&[], "release-timeout", timeout).await;
    let lock = redis.lock();
    let k = key("r");
    load_scripts(&lock).await;
    let lease = lock
        .try_acquire(&k, Duration::from_secs(180))
        .await
        .unwrap()
        .unwrap();
    server.signal("-STOP");
    let released = lock.release(&lease).await;
    server.signal("-CONT");
    assert!(released.is_err(), "{released:?}");
    until_it_answers(&redis, Duration::from_secs(5)).await;
    let lease_key = raw_key(&prefix, "lease", &k);
    let released = eventually(|| async { pttl(&server.url(), &lease_key).await == -2 }).await;
    let ttl = pttl(&server.url(), &lease_key).await;
    assert!(
        released,
        "the timed-out release was dropped: the lease stays {ttl} ms"
    );
}

/// `CLIENT PAUSE ALL` (own server): commands block inside Redis; every call
/// fails within the command timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_client_pause_and_debug_sleep_fail_within_the_command_timeout() {
    let timeout = Duration::from_millis(300);
    let (server, redis, _) = own(&["--enable-debug-command", "yes"], "pause", timeout).await;
    let (lock, cache) = (redis.lock(), redis.token_cache());
    redis.ping().await.unwrap();
    let mut admin = raw(&server.url()).await;
    let _: () = exec(&mut admin, ("CLIENT", "PAUSE", 1500, "ALL")).await;
    let bound = timeout + Duration::from_millis(150);
    within(
        "acquire (paused)",
        bound,
        lock.try_acquire(&key("p"), Duration::from_secs(5)),
    )
    .await;
    within("get (paused)", bound, cache.get(&key("p"))).await;
    // Let the pause end (UNPAUSE from a paused client blocks too).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    redis.ping().await.expect("works after the pause");
    // DEBUG SLEEP from another connection.
    let url = server.url();
    let sleeper = tokio::spawn(async move {
        let mut c = raw(&url).await;
        let _: Result<(), _> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("1")
            .query_async(&mut c)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    within(
        "acquire (debug sleep)",
        bound,
        lock.try_acquire(&key("q"), Duration::from_secs(5)),
    )
    .await;
    sleeper.await.unwrap();
}

// ------------------------------------------------------ errors and secrets

/// README: "failed authentication" is `Unavailable`. A server that requires
/// a password and a URL without one answers `NOAUTH`; with a wrong one,
/// `WRONGPASS`. Neither error may show the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_auth_failures_are_unavailable_and_never_show_the_password() {
    let server = Own::start_with(&["--requirepass", "right-pass-4242"]).await;
    let prefix = unique_prefix("auth");
    let timeout = Duration::from_millis(500);

    let wrong = RedisBackend::connect(timed_config(
        format!("redis://:hunter2-wrong@127.0.0.1:{}/", server.port),
        &prefix,
        timeout,
    ))
    .await
    .unwrap();
    let e = wrong
        .lock()
        .try_acquire(&key("a"), Duration::from_secs(1))
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?} {wrong:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let wrong_kind = e.kind();

    let none = server.backend(&prefix, timeout).await;
    let e = none
        .lock()
        .try_acquire(&key("a"), Duration::from_secs(1))
        .await
        .unwrap_err();
    let noauth = format!("{e}");
    let noauth_kind = e.kind();
    let e2 = none.token_cache().get(&key("a")).await.unwrap_err();
    assert_eq!(
        (wrong_kind, noauth_kind, e2.kind()),
        (
            StorageErrorKind::Unavailable,
            StorageErrorKind::Unavailable,
            StorageErrorKind::Unavailable
        ),
        "auth failures: wrong password / NOAUTH ({noauth}) / NOAUTH on get"
    );
}

/// A storage error raised while a token is in the arguments never shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_errors_never_show_token_values() {
    // An own server out of memory: the lease script's first write fails
    // with OOM, which is Unavailable (the flow falls to its next layer).
    // Then writes are paused: the put of a token times out. Neither error
    // shows the token. (A put's first write is a DEL, which Redis allows
    // under OOM, and a script that passed its first write is not checked
    // again, so the put is not the OOM probe.)
    let (server, redis, _) = own(
        &["--maxmemory", "1", "--maxmemory-policy", "noeviction"],
        "secret",
        Duration::from_millis(300),
    )
    .await;
    let lock_error = redis
        .lock()
        .try_acquire(&key("sec"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        lock_error.kind(),
        StorageErrorKind::Unavailable,
        "{lock_error}"
    );

    let mut c = raw(&server.url()).await;
    let _: () = exec(&mut c, ("CLIENT", &["PAUSE", "5000", "WRITE"])).await;
    let e = redis
        .token_cache()
        .put(
            &key("sec"),
            &token("sk-SECRET-ACCESS-TOKEN-777", 3),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    let _: () = exec(&mut c, ("CLIENT", "UNPAUSE")).await;
    let shown = format!("{e} {e:?} {lock_error} {lock_error:?}");
    assert_eq!(e.kind(), StorageErrorKind::Timeout, "{shown}");
    assert!(!shown.contains("SECRET-ACCESS"), "{shown}");
}

// ------------------------------------------------------------- cache

/// README: `InvalidData` is "a reply or cached entry that does not decode".
/// A string (or list) under the cache key written by something else is such
/// an entry, but `get` reports `Other` (WRONGTYPE mapped to Other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_get_of_a_wrong_type_entry_is_invalid_data() {
    let (redis, prefix) = shared("wrongtype-get").await;
    let cache = redis.token_cache();
    let k = key("w");
    let mut c = raw(&server_url()).await;
    let _: () = exec(&mut c, ("SET", raw_key(&prefix, "token", &k), "garbage")).await;
    let got = cache.get(&k).await;
    // Garbage in `d` of a hash, for comparison: InvalidData (holds).
    let k2 = key("w2");
    let _: i64 = exec(
        &mut c,
        (
            "HSET",
            raw_key(&prefix, "token", &k2),
            "v",
            "1",
            "d",
            "{not json",
        ),
    )
    .await;
    let got2 = cache.get(&k2).await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert_eq!(
        got2.unwrap_err().kind(),
        StorageErrorKind::InvalidData,
        "garbage payload"
    );
    let kind = got.as_ref().map_err(StorageError::kind);
    assert_eq!(
        kind.err(),
        Some(StorageErrorKind::InvalidData),
        "a string under the cache key: {got:?}"
    );
}

/// A put over a wrong-type entry (a string) written by something else:
/// the version guard cannot read it, and the put fails with `Other`
/// forever (the garbage has no TTL), so the shared cache is dead for the
/// key until someone deletes it by hand. Expected: the put replaces an
/// unreadable entry (it guards nothing) and later gets hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_put_over_a_wrong_type_entry_heals_it() {
    let (redis, prefix) = shared("wrongtype-put").await;
    let cache = redis.token_cache();
    let k = key("w");
    let mut c = raw(&server_url()).await;
    let _: () = exec(&mut c, ("SET", raw_key(&prefix, "token", &k), "garbage")).await;
    let put = cache
        .put(&k, &token("at-5", 5), Duration::from_secs(30))
        .await;
    let get = cache.get(&k).await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert!(
        matches!(put, Ok(PutOutcome::Stored)),
        "put over a string: {put:?}"
    );
    assert_eq!(get.unwrap(), Some(token("at-5", 5)));
}

/// A cached hash whose `v` is not a number: put.lua does
/// `tonumber(cached) > tonumber(ARGV[1])` = `nil > n`, a Lua error, so every
/// put fails with `Other` (never heals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_put_over_a_non_numeric_cached_version_heals_it() {
    let (redis, prefix) = shared("badv").await;
    let cache = redis.token_cache();
    let k = key("v");
    let mut c = raw(&server_url()).await;
    let _: i64 = exec(
        &mut c,
        ("HSET", raw_key(&prefix, "token", &k), "v", "abc", "d", "{}"),
    )
    .await;
    let put = cache
        .put(&k, &token("at-5", 5), Duration::from_secs(30))
        .await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert!(
        matches!(put, Ok(PutOutcome::Stored)),
        "put over v=abc: {put:?}"
    );
}

/// A put with a huge TTL: put.lua runs `HSET` and THEN `PEXPIRE`, which
/// Redis refuses (value out of range). Scripts do not roll back: the put
/// returns an error, yet the entry IS stored, with no TTL at all (immortal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_put_with_a_huge_ttl_is_atomic() {
    let memory = InMemoryTokenCache::default();
    assert_eq!(
        memory
            .put(&key("h"), &token("at-1", 1), Duration::MAX)
            .await
            .unwrap(),
        PutOutcome::Stored,
        "reference cache accepts Duration::MAX"
    );
    let (redis, prefix) = shared("huge-put").await;
    let cache = redis.token_cache();
    let k = key("h");
    let put = cache.put(&k, &token("at-1", 1), Duration::MAX).await;
    let mut c = raw(&server_url()).await;
    let pttl: i64 = exec(&mut c, ("PTTL", raw_key(&prefix, "token", &k))).await;
    let get = cache.get(&k).await;
    delete_prefix(Deployment::Single, &prefix).await;
    match put {
        Ok(PutOutcome::Stored) => {}
        other => {
            assert!(
                pttl == -2,
                "put(Duration::MAX) returned {other:?} but the entry was written \
                 anyway with PTTL {pttl} (-1 = never expires); get: {get:?}"
            );
        }
    }
}

/// The version guard compares versions as Lua numbers (doubles): above
/// 2^53 a higher cached version is replaced by a lower one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_version_guard_holds_above_2_pow_53() {
    let (redis, prefix) = shared("bigv").await;
    let cache = redis.token_cache();
    let k = key("b");
    let high = (1u64 << 53) + 1;
    let low = 1u64 << 53;
    assert_eq!(
        cache
            .put(&k, &token("at-high", high), Duration::from_secs(30))
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    let second = cache
        .put(&k, &token("at-low", low), Duration::from_secs(30))
        .await
        .unwrap();
    let got = cache.get(&k).await.unwrap();
    delete_prefix(Deployment::Single, &prefix).await;
    assert_eq!(
        second,
        PutOutcome::Superseded {
            cached_version: high
        },
        "a lower version replaced a higher one; cached now: {:?}",
        got.map(|t| t.version)
    );
}

/// A put with a zero TTL: the reference cache's entry is gone at once; the
/// Redis one lives 1 ms (`px()` clamps to 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_put_with_zero_ttl_is_not_readable_like_the_reference() {
    let memory = InMemoryTokenCache::default();
    memory
        .put(&key("z"), &token("at-1", 1), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(memory.get(&key("z")).await.unwrap(), None);
    let (redis, prefix) = shared("zero-put").await;
    let cache = redis.token_cache();
    let mut seen = 0;
    for i in 0..20 {
        let kk = key(&format!("z{i}"));
        cache
            .put(&kk, &token("at-1", 1), Duration::ZERO)
            .await
            .unwrap();
        if cache.get(&kk).await.unwrap().is_some() {
            seen += 1;
        }
    }
    delete_prefix(Deployment::Single, &prefix).await;
    assert_eq!(seen, 0, "{seen}/20 zero-TTL entries were still readable");
}

/// TTLs are honoured, equal versions replace, invalidate races end in a
/// state the contract allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cache_ttl_and_invalidate_races_hold() {
    let (redis, prefix) = shared("cache-ok").await;
    let cache = redis.token_cache();
    let k = key("t");
    cache
        .put(&k, &token("at-1", 1), Duration::from_millis(150))
        .await
        .unwrap();
    assert!(cache.get(&k).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(cache.get(&k).await.unwrap(), None);
    // Equal version replaces.
    cache
        .put(&k, &token("at-a", 3), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        cache
            .put(&k, &token("at-b", 3), Duration::from_secs(30))
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    // Races: many puts and invalidates; at the end, either nothing or a
    // token whose version is the highest put after the last invalidate.
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let cache = cache.clone();
        let kk = key("race");
        tasks.push(tokio::spawn(async move {
            if i % 7 == 0 {
                cache.invalidate(&kk).await.unwrap();
            } else {
                cache
                    .put(&kk, &token(&format!("at-{i}"), i), Duration::from_secs(30))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    if let Some(t) = cache.get(&key("race")).await.unwrap() {
        assert_eq!(t.access_token.expose(), format!("at-{}", t.version));
    }
    delete_prefix(Deployment::Single, &prefix).await;
}

// ------------------------------------------------------- notifications

/// A publish after `subscribe_refreshed` returned is always heard: 400
/// keys at once from another process, and 100 back-to-back rounds on one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn h_every_publish_after_subscribe_is_heard_many_keys_and_rounds() {
    let (redis, prefix) = shared("notify-many").await;
    let other = RedisBackend::connect(redis.config().clone()).await.unwrap();
    let (waiter, publisher) = (redis.token_cache(), other.token_cache());
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let (w, p) = (waiter.clone(), publisher.clone());
        tasks.push(tokio::spawn(async move {
            let k = key(&format!("n{}", i % 100));
            let notice = w.subscribe_refreshed(&k).await.expect("subscribe");
            p.publish_refreshed(&k, i + 1).await.unwrap();
            tokio::time::timeout(Duration::from_secs(10), notice)
                .await
                .unwrap_or_else(|_| panic!("key {i}: publish after subscribe not heard"))
        }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap().is_some(),
            "a notice resolved None on a working channel"
        );
    }
    let k = key("rounds");
    for round in 0..100u64 {
        let notice = waiter.subscribe_refreshed(&k).await.unwrap();
        publisher.publish_refreshed(&k, round).await.unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), notice)
            .await
            .unwrap_or_else(|_| panic!("round {round} not heard"));
        assert!(heard.is_some(), "round {round}: None");
    }
    delete_prefix(Deployment::Single, &prefix).await;
}

/// A payload someone else published that is not a number wakes waiters
/// (spurious wake, allowed) and leaves the hub working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_non_numeric_payload_is_a_spurious_wake_and_the_hub_keeps_working() {
    let (redis, prefix) = shared("garbage-payload").await;
    let cache = redis.token_cache();
    let k = key("g");
    let notice = cache.subscribe_refreshed(&k).await.unwrap();
    let mut c = raw(&server_url()).await;
    let _: i64 = exec(
        &mut c,
        (
            "PUBLISH",
            raw_key(&prefix, "refreshed", &k),
            b"\xff\xfe not a number".as_slice(),
        ),
    )
    .await;
    let heard = tokio::time::timeout(Duration::from_secs(5), notice)
        .await
        .unwrap();
    assert!(
        heard.is_some(),
        "a garbage payload must not look like a closed channel"
    );
    let notice = cache.subscribe_refreshed(&k).await.unwrap();
    cache.publish_refreshed(&k, 9).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), notice)
            .await
            .unwrap(),
        Some(9)
    );
    delete_prefix(Deployment::Single, &prefix).await;
}

async fn numsub(url: &str, channels: &[String]) -> i64 {
    let mut c = raw(url).await;
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("NUMSUB");
    for ch in channels {
        cmd.arg(ch);
    }
    let v: Vec<redis::Value> = cmd.query_async(&mut c).await.unwrap();
    v.chunks(2)
        .map(|p| match &p[1] {
            redis::Value::Int(n) => *n,
            _ => 0,
        })
        .sum()
}

/// Waiters dropped before any notice: their channels are unsubscribed as
/// soon as nobody waits on them (they once stayed until 64 more
/// subscriptions came, however long the hub stayed idle); a channel that
/// still has a waiter stays and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_dropped_waiters_are_freed_when_idle() {
    let (redis, prefix) = shared("dropped").await;
    let cache = redis.token_cache();
    let mut channels = Vec::new();
    let mut notices = Vec::new();
    for i in 0..200 {
        let k = key(&format!("d{i}"));
        channels.push(raw_key(&prefix, "refreshed", &k));
        notices.push(cache.subscribe_refreshed(&k).await.unwrap());
    }
    // One waiter of a shared channel stays: its channel must stay too.
    let shared_key = key("d0");
    let kept = cache.subscribe_refreshed(&shared_key).await.unwrap();
    drop(notices);
    let freed = eventually(|| async { numsub(&server_url(), &channels[1..]).await == 0 }).await;
    let idle = numsub(&server_url(), &channels[1..]).await;
    let still_there = numsub(&server_url(), &channels[..1]).await;
    let publisher = RedisBackend::connect(redis.config().clone()).await.unwrap();
    publisher
        .token_cache()
        .publish_refreshed(&shared_key, 9)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(3), kept).await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert!(
        freed,
        "{idle} channels of dropped waiters still subscribed with nobody waiting"
    );
    assert_eq!(
        still_there, 1,
        "a channel with a live waiter stays subscribed"
    );
    assert_eq!(heard.expect("resolves"), Some(9));
}

/// `CLIENT KILL TYPE pubsub` (own server): pending notices resolve None;
/// later subscriptions work again and hear publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_killed_pubsub_connection_resolves_none_then_recovers() {
    let (server, redis, _) = own(&[], "client-kill", Duration::from_millis(300)).await;
    let cache = redis.token_cache();
    let mut pending = Vec::new();
    for i in 0..10 {
        pending.push(
            cache
                .subscribe_refreshed(&key(&format!("k{}", i % 3)))
                .await
                .unwrap(),
        );
    }
    for round in 0..3 {
        let mut admin = raw(&server.url()).await;
        let _: i64 = exec(&mut admin, ("CLIENT", "KILL", "TYPE", "pubsub")).await;
        for n in pending.drain(..) {
            let heard = tokio::time::timeout(Duration::from_secs(2), n)
                .await
                .unwrap_or_else(|_| panic!("round {round}: notice did not resolve after kill"));
            assert_eq!(heard, None);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let notice = loop {
            match cache.subscribe_refreshed(&key("k0")).await {
                Ok(n) => break n,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no resubscription: {e}");
                    assert!(matches!(
                        e.kind(),
                        StorageErrorKind::Unavailable | StorageErrorKind::Timeout
                    ));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        cache.publish_refreshed(&key("k0"), 5).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(3), notice)
                .await
                .unwrap(),
            Some(5)
        );
        pending.push(cache.subscribe_refreshed(&key("k1")).await.unwrap());
    }
}

/// A notice must never resolve `None` while the channel works. A server
/// that is briefly slower than the command timeout (a 0.5 s `DEBUG SLEEP`)
/// while the hub subscribes a NEW channel makes the hub drop its
/// connection: every OTHER pending notice resolves `None`, although the
/// connection was healthy and the publish that follows would be delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_one_slow_subscribe_does_not_close_every_other_waiters_notice() {
    let (server, redis, _) = own(
        &["--enable-debug-command", "yes"],
        "slow-sub",
        Duration::from_millis(200),
    )
    .await;
    let cache = redis.token_cache();
    let waiting = cache.subscribe_refreshed(&key("a")).await.unwrap();
    let url = server.url();
    let sleeper = tokio::spawn(async move {
        let mut c = raw(&url).await;
        let _: Result<(), _> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.5")
            .query_async(&mut c)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let slow = cache.subscribe_refreshed(&key("b")).await;
    sleeper.await.unwrap();
    // The server is fine again; publish for the first waiter.
    let publisher = RedisBackend::connect(redis.config().clone()).await.unwrap();
    publisher
        .token_cache()
        .publish_refreshed(&key("a"), 3)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(3), waiting).await;
    assert!(
        slow.is_err(),
        "the slow subscription itself may fail: {slow:?}"
    );
    assert_eq!(
        heard.expect("resolves"),
        Some(3),
        "an unrelated waiter's notice resolved None because another subscription was slow"
    );
}

/// The hub task is spawned on the runtime of the FIRST `subscribe_refreshed`
/// and never respawned. A backend shared across runtimes (a process-wide
/// backend used from a second runtime, tests sharing a static, a dedicated
/// runtime for the background refresher that is restarted) loses
/// notifications forever once that runtime is gone: every later
/// subscription fails "notification task ended", while commands work.
#[test]
#[ignore = "needs services: cargo xtask test"]
fn h_notifications_survive_the_runtime_that_first_subscribed() {
    let prefix = unique_prefix("runtimes");
    let config = RedisConfig::new(server_url()).unwrap().with_prefix(&prefix);
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (redis, cache) = first.block_on(async {
        let redis = RedisBackend::connect(config).await.unwrap();
        let cache = redis.token_cache();
        let n = cache.subscribe_refreshed(&key("r")).await.unwrap();
        cache.publish_refreshed(&key("r"), 1).await.unwrap();
        assert_eq!(n.await, Some(1));
        (redis, cache)
    });
    drop(first);
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        // Commands work (after at most a reconnect).
        let mut ok = false;
        for _ in 0..50 {
            if redis.ping().await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "commands never work again in the second runtime");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match cache.subscribe_refreshed(&key("r")).await {
                Ok(n) => {
                    cache.publish_refreshed(&key("r"), 2).await.unwrap();
                    assert_eq!(
                        tokio::time::timeout(Duration::from_secs(3), n)
                            .await
                            .unwrap(),
                        Some(2)
                    );
                    break;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "subscriptions never work again after the first runtime ended: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        delete_prefix(Deployment::Single, &prefix).await;
    });
}

// --------------------------------------------------------------- config

#[test]
fn h_config_errors_and_debug_never_show_a_password() {
    let bad = [
        "redis://:hunter2@h:notaport/",
        "redis://u:hunter2@/",
        "http://u:hunter2@h/",
        "redis+cluster://u:hunter2@h1:1,h2:bad/",
        "redis+cluster://u:hunter2@/",
        "rediss+cluster://u:hunter2@h1:1/",
        "redis://u:hunter2@h:1/notadb",
        "unix://u:hunter2@/tmp/x.sock",
        "REDIS+CLUSTER://u:hunter2@h1:1,h2:2/",
    ];
    for url in bad {
        if let Err(e) = RedisConfig::new(url) {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("hunter2"), "{url}: {shown}");
        }
        let c = RedisConfig::default().with_prefix("p");
        let c = RedisConfig {
            url: refresh_redis::RedisUrl::One(url.into()),
            ..c
        };
        assert!(!format!("{c:?}").contains("hunter2"), "{url}");
    }
    let good = [
        "redis://user:hunter2@h/",
        "redis://:hunter2@h/",
        "redis://:p%40hunter2@h/",
        "redis://u:hunter2@h:1/0?protocol=resp3",
        "redis+cluster://u:hunter2@h1:1,h2:2/",
    ];
    for url in good {
        let c = RedisConfig::new(url).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "{url}: {c:?}");
    }
    let c = RedisConfig::cluster(["redis://:hunter2@h1:1/", "redis://u:hunter2@h2:2/"]).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn h_config_prefix_rules() {
    let base = RedisConfig::new("redis://h/").unwrap();
    for bad in ["", "a{b", "a}b", "{}", "a b", "a\nb", "a\tb", "\u{0}"] {
        assert!(
            matches!(
                base.clone().with_prefix(bad).validate(),
                Err(ConfigError::InvalidPrefix { .. })
            ),
            "{bad:?}"
        );
    }
    for ok in ["a:b", "a:b:", ":", "oauth-refresh", "é"] {
        assert!(base.clone().with_prefix(ok).validate().is_ok(), "{ok:?}");
    }
    // serde does not validate, connect does.
    let c: RedisConfig = serde_json::from_str(r#"{"key_prefix": "a{b"}"#).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(RedisBackend::connect(c)).is_err());
}

// --------------------------------------------------------------- cluster

struct OwnCluster {
    nodes: Vec<Own>,
}

impl OwnCluster {
    async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                Own::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .await,
            );
        }
        // Each node needs its own config file name in its own dir: Own uses
        // a dir per port, so the default nodes.conf is per node.
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        for n in &nodes {
            args.push(format!("127.0.0.1:{}", n.port));
        }
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
        let out = Command::new("redis-cli").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Wait for cluster_state:ok everywhere.
        for _ in 0..200 {
            let mut all = true;
            for n in &nodes {
                let mut c = raw(&n.url()).await;
                let info: String = exec(&mut c, ("CLUSTER", "INFO")).await;
                all &= info.contains("cluster_state:ok");
            }
            if all {
                return Self { nodes };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cluster never became ok");
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Own::url).collect()
    }

    /// A backend on the cluster under a fresh prefix, and the prefix.
    async fn backend(&self, test: &str, timeout: Option<Duration>) -> (RedisBackend, String) {
        let prefix = unique_prefix(test);
        let mut config = RedisConfig::cluster(self.urls())
            .unwrap()
            .with_prefix(&prefix);
        if let Some(timeout) = timeout {
            config = config.with_command_timeout(timeout);
        }
        (RedisBackend::connect(config).await.unwrap(), prefix)
    }

    /// Which node owns `slot`.
    async fn owner_of(&self, slot: i64) -> usize {
        let mut c = raw(&self.nodes[0].url()).await;
        let v: Vec<Vec<redis::Value>> = exec(&mut c, ("CLUSTER", "SLOTS")).await;
        for range in v {
            let (lo, hi) = match (&range[0], &range[1]) {
                (redis::Value::Int(a), redis::Value::Int(b)) => (*a, *b),
                _ => continue,
            };
            if (lo..=hi).contains(&slot)
                && let redis::Value::Array(node) = &range[2]
                && let redis::Value::Int(port) = &node[1]
            {
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port) == *port)
                    .unwrap();
            }
        }
        panic!("slot {slot} unowned");
    }

    /// Starts moving the slot of `key` from its owner to the next master:
    /// IMPORTING on the one, MIGRATING on the other; no key moved yet.
    async fn begin_slot_move(&self, key: &str) -> SlotMove<'_> {
        let slot: i64 = exec(
            &mut raw(&self.nodes[0].url()).await,
            ("CLUSTER", "KEYSLOT", key),
        )
        .await;
        let from = self.owner_of(slot).await;
        let to = (from + 1) % 3;
        let mut src = raw(&self.nodes[from].url()).await;
        let mut dst = raw(&self.nodes[to].url()).await;
        let from_id: String = exec(&mut src, ("CLUSTER", "MYID")).await;
        let to_id: String = exec(&mut dst, ("CLUSTER", "MYID")).await;
        let _: () = exec(
            &mut dst,
            ("CLUSTER", "SETSLOT", slot, "IMPORTING", &from_id),
        )
        .await;
        let _: () = exec(&mut src, ("CLUSTER", "SETSLOT", slot, "MIGRATING", &to_id)).await;
        SlotMove {
            cluster: self,
            slot,
            to,
            to_id,
            src,
        }
    }
}

/// A slot half-way from one master to another.
struct SlotMove<'a> {
    cluster: &'a OwnCluster,
    slot: i64,
    to: usize,
    to_id: String,
    /// A connection to the node the slot leaves.
    src: redis::aio::MultiplexedConnection,
}

impl SlotMove<'_> {
    /// The keys of the slot still on the node it leaves (at most 100).
    async fn keys_left(&mut self) -> Vec<String> {
        exec(&mut self.src, ("CLUSTER", "GETKEYSINSLOT", self.slot, 100)).await
    }

    /// MIGRATEs `key` to the node the slot goes to.
    async fn move_key(&mut self, key: &str) {
        let port = self.cluster.nodes[self.to].port;
        let _: () = exec(&mut self.src, ("MIGRATE", "127.0.0.1", port, key, 0, 5000)).await;
    }

    /// Gives the slot to the node it goes to, on every node.
    async fn finish(self) {
        for n in &self.cluster.nodes {
            let mut c = raw(&n.url()).await;
            let _: () = exec(
                &mut c,
                ("CLUSTER", "SETSLOT", self.slot, "NODE", &self.to_id),
            )
            .await;
        }
    }
}

/// Keys with braces in odd places: lease and fence (and the token entry)
/// work on a cluster (one slot per refresh key); a lease survives its slot
/// being migrated to another master (MOVED), and acquire/extend/release
/// and the cache follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cluster_braced_keys_and_a_slot_migration() {
    let cluster = OwnCluster::start().await;
    let (redis, prefix) = cluster.backend("cluster", None).await;
    let (lock, cache) = (redis.lock(), redis.token_cache());
    for raw_name in ["a}b", "{x}", "}{", "k:{}", "{", "}", "", "{{}}", "é{ü}"] {
        let k = RefreshKey::from_raw(raw_name);
        let lease = lock
            .try_acquire(&k, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{raw_name:?}: {e}"))
            .expect("free");
        assert!(lock.extend(&lease, Duration::from_secs(30)).await.unwrap());
        assert!(lock.release(&lease).await.unwrap());
        let again = lock
            .try_acquire(&k, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(again.fence > lease.fence, "{raw_name:?}");
        cache
            .put(&k, &token("at-1", 1), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(cache.get(&k).await.unwrap(), Some(token("at-1", 1)));
        let n = cache.subscribe_refreshed(&k).await.unwrap();
        cache.publish_refreshed(&k, 4).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), n)
                .await
                .unwrap(),
            Some(4)
        );
        assert!(lock.release(&again).await.unwrap());
    }

    // Slot migration of a held lease.
    let k = key("migrate");
    let lease = lock
        .try_acquire(&k, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    cache
        .put(&k, &token("at-7", 7), Duration::from_secs(60))
        .await
        .unwrap();
    let mut slot_move = cluster
        .begin_slot_move(&raw_key(&prefix, "lease", &k))
        .await;
    for kk in slot_move.keys_left().await {
        slot_move.move_key(&kk).await;
    }
    slot_move.finish().await;
    // The same backend, which cached the old slot map.
    assert!(
        lock.try_acquire(&k, Duration::from_secs(5))
            .await
            .unwrap()
            .is_none(),
        "the migrated lease is still held"
    );
    assert!(lock.extend(&lease, Duration::from_secs(60)).await.unwrap());
    assert_eq!(cache.get(&k).await.unwrap(), Some(token("at-7", 7)));
    assert!(lock.release(&lease).await.unwrap());
    let next = lock
        .try_acquire(&k, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(next.fence > lease.fence);
}

/// A `?protocol=resp3` URL is accepted by the config; everything must work
/// on it (lock, cache, notifications).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_resp3_urls_work_end_to_end() {
    let mut url = server_url();
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str("?protocol=resp3");
    let prefix = unique_prefix("resp3");
    let redis = RedisBackend::connect(RedisConfig::new(url).unwrap().with_prefix(&prefix))
        .await
        .unwrap();
    let (lock, cache) = (redis.lock(), redis.token_cache());
    let lease = lock
        .try_acquire(&key("r"), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(lock.extend(&lease, Duration::from_secs(5)).await.unwrap());
    assert!(lock.release(&lease).await.unwrap());
    cache
        .put(&key("r"), &token("at-1", 1), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("r")).await.unwrap(), Some(token("at-1", 1)));
    let n = cache.subscribe_refreshed(&key("r")).await.unwrap();
    cache.publish_refreshed(&key("r"), 2).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(3), n).await;
    delete_prefix(Deployment::Single, &prefix).await;
    assert_eq!(heard.expect("heard"), Some(2));
}

/// Cluster: the notification hub connects to the FIRST seed node and moves
/// to another only when a connect fails. A first node that is frozen
/// (SIGSTOP; a partition looks the same: the kernel still accepts TCP)
/// accepts the connection, then every SUBSCRIBE times out, the hub
/// reconnects to the same node, and notifications stay dead although two
/// healthy masters would forward every PUBLISH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cluster_notifications_survive_a_frozen_first_seed_node() {
    let cluster = OwnCluster::start().await;
    let (redis, prefix) = cluster
        .backend("cluster-frozen", Some(Duration::from_millis(300)))
        .await;
    let cache = redis.token_cache();
    // The hub is up, on node 0.
    let n = cache.subscribe_refreshed(&key("c")).await.unwrap();
    drop(n);
    cluster.nodes[0].signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    let mut attempt = 0;
    let heard = loop {
        if Instant::now() > deadline {
            break None;
        }
        // A fresh key each time, so the hub really sends SUBSCRIBE.
        attempt += 1;
        let k = key(&format!("c{attempt}"));
        let channel = raw_key(&prefix, "refreshed", &k);
        match cache.subscribe_refreshed(&k).await {
            Ok(n) => {
                // Publish through a healthy master (node 1); the bus forwards.
                let mut c = raw(&cluster.nodes[1].url()).await;
                let _: i64 = exec(&mut c, ("PUBLISH", &channel, "6")).await;
                match tokio::time::timeout(Duration::from_secs(2), n).await {
                    Ok(Some(v)) => break Some(v),
                    other => last = format!("notice: {other:?}"),
                }
            }
            Err(e) => last = format!("subscribe: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.nodes[0].signal("-CONT");
    assert_eq!(
        heard,
        Some(6),
        "no notification for 20 s with the first seed node frozen and two masters healthy; last: {last}"
    );
}

/// A cluster URL with a non-zero db (`redis+cluster://h1,h2/3`) passes
/// `RedisConfig::validate`, but a Redis Cluster has only db 0: the config
/// should be refused as invalid, not accepted and then reported at
/// `connect` as "cannot reach the Redis Cluster".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cluster_url_with_a_nonzero_db_is_a_config_error() {
    let cluster = OwnCluster::start().await;
    let hosts: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let url = format!("redis+cluster://{}/3", hosts.join(","));
    let validated = RedisConfig::new(url.clone());
    let connected = match &validated {
        Ok(c) => Some(RedisBackend::connect(c.clone()).await.map(|_| ())),
        Err(_) => None,
    };
    let shown = format!("{connected:?}");
    assert!(
        validated.is_err() || matches!(connected, Some(Ok(()))),
        "validate: {validated:?}; connect: {shown}"
    );
}

/// Cluster, slot half-migrated (ASK): the fence counter already moved to
/// the importing node, the held lease not yet. Acquire must not hand out a
/// second lease (nor a smaller fence); release by the owner must work or
/// fail with a retryable kind; after the migration completes all is sane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn h_cluster_half_migrated_slot_never_double_grants() {
    let cluster = OwnCluster::start().await;
    let (redis, prefix) = cluster.backend("cluster-ask", None).await;
    let lock = redis.lock();
    let k = key("ask");
    let first = lock
        .try_acquire(&k, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let lease_key = raw_key(&prefix, "lease", &k);
    let fence_key = raw_key(&prefix, "fence", &k);
    let mut slot_move = cluster.begin_slot_move(&lease_key).await;
    slot_move.move_key(&fence_key).await;

    let other = RedisBackend::connect(redis.config().clone())
        .await
        .unwrap()
        .lock();
    let mid = other.try_acquire(&k, Duration::from_secs(60)).await;
    let mid_release_forged = {
        let mut f = first.clone();
        f.owner = LeaseOwner::random();
        other.release(&f).await
    };
    // Finish the migration.
    slot_move.move_key(&lease_key).await;
    slot_move.finish().await;
    assert!(
        !matches!(mid, Ok(Some(_))),
        "a second lease granted mid-migration: {mid:?}"
    );
    if let Err(e) = &mid {
        assert!(
            matches!(
                e.kind(),
                StorageErrorKind::Unavailable | StorageErrorKind::Timeout
            ),
            "mid-migration acquire failed with a non-retryable kind: {e:?}"
        );
    }
    assert!(!matches!(mid_release_forged, Ok(true)));
    assert!(
        other
            .try_acquire(&k, Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    assert!(lock.release(&first).await.unwrap());
    let next = other
        .try_acquire(&k, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(next.fence > first.fence);
}
