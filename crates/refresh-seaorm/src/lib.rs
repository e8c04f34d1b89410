//! SeaORM backends for oauth-refresh.
//!
//! This crate will hold the relational implementations of `refresh-core`'s
//! ports: migrations for the `accounts` and `refresh_leases` tables, the
//! account repository with its compare-and-set on `credentials_version`, a
//! database lease lock (conditional `UPDATE`, owner-checked), and a durable
//! generation-claim store. SQLite is the embedded default; PostgreSQL is
//! supported and MySQL compiles.
//!
//! It depends on `refresh-core` only and runs core's conformance suites
//! against real SQLite and PostgreSQL. The implementation lands in a later
//! issue.
