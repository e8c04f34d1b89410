//! End-to-end tests of oauth-refresh.
//!
//! Later issues add multi-process scenarios here (several OS processes
//! against real Redis, PostgreSQL and the OAuth emulator, with fault
//! injection). This crate is not published.
