//! Redis backends for oauth-refresh.
//!
//! This crate will hold the Redis implementations of `refresh-core`'s ports:
//! a lease lock (`SET key owner NX PX ttl` plus an `INCR` fence, with Lua
//! compare-and-act scripts for release and extension), the shared access-token
//! cache with version-guarded writes, and the pub/sub channel that wakes
//! callers waiting for a refresh held elsewhere. Keys carry a per-deployment
//! prefix and a hash tag so the backend works on Redis Cluster.
//!
//! It depends on `refresh-core` only and runs core's conformance suites
//! against a real `redis-server`. The implementation lands in a later issue.
