//! OAuth refresh executors for oauth-refresh.
//!
//! This crate will hold the `RefreshExecutor` implementations for Claude,
//! OpenAI, Gemini (code_assist, google_one, ai_studio) and Antigravity, as
//! `REFERENCE.md` describes them, with every endpoint and client id
//! overridable, per-account proxies that fail closed, bounded response sizes,
//! and an OAuth emulator (feature `emulator`) used by tests, benchmarks and the
//! demo.
//!
//! It depends on `refresh-core` only. The implementation lands in a later
//! issue.
