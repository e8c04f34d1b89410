//! The baseline: the Go implementation's algorithm, re-implemented step by
//! step as REFERENCE.md describes it, on the same PostgreSQL, Redis and
//! emulator as this project, so the numbers compare algorithms rather than
//! languages or setups. Its defects are reproduced on purpose; nothing here
//! is used outside the benchmarks.
//!
//! | Go | here |
//! |---|---|
//! | accounts table, credentials a JSON object | `go_accounts` in the same database, plaintext JSON ([`table`]) |
//! | refresh lock `SET oauth:refresh_lock:<key> 1 NX EX 30`, release by plain `DEL` (§9, defects 1-2) | [`store::RedisStore::try_lock`] / [`store::RedisStore::unlock`] |
//! | token cache `GET` on every read, `SET .. PX ttl` after a miss (§5, §9) | [`store::RedisStore::get_token`] / [`store::RedisStore::set_token`] |
//! | RefreshIfNeeded: local mutex → SETNX → re-read → double-check → executor → `_token_version` = now ms + full-row update → DEL (§3.2) | [`refresh::Baseline::refresh_if_needed`] |
//! | Claude getter: cache → pre-check (3 min) → refresh → on lock held sleep 200 ms, re-read the cache once, else the old token → version check → cache write (§5) | [`getter`] |
//! | background: list every active account by priority, sequentially; predicate on the listed snapshot; 3 attempts with 2 s / 4 s backoff; `DEL` of the cache key after a refresh (§8) | [`sweep`] |
//!
//! The upstream call is this project's Claude executor against the emulator
//! (the same HTTP client and request as the project's), so the upstream
//! cost is identical on both sides.

pub(crate) mod getter;
pub(crate) mod refresh;
pub(crate) mod store;
pub(crate) mod sweep;
pub(crate) mod table;

pub(crate) use refresh::Baseline;
