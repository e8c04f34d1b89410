//! End-to-end fault matrix of oauth-refresh across OS processes.
//!
//! Each scenario in `tests/` starts the OAuth emulator as its own process
//! (`oauth-emulator`, driven by its admin API), a throwaway PostgreSQL
//! database and Redis (a `redis-server` the scenario may kill, pause,
//! restart or flush), and several worker processes: the real
//! `oauth-refresh` binary (`serve`, `run`) or the `fault-worker` test
//! binary of this crate (the same wiring with an offset clock, a
//! repository whose writes fail or crawl, short leases). It then injects
//! its fault and checks the end state with [`Cluster::assert_end_state`]:
//! no reuse attempt and no revoked grant at the emulator, every stored
//! refresh token equal to the grant's current one, no account wrongly
//! marked error, no issued token in any captured output.
//!
//! The binaries are looked up beside the test executable
//! ([`bins::path`]); `cargo test --workspace` (what `cargo xtask test`
//! runs) builds them.

pub mod bins;
pub mod cluster;
pub mod emulator;
pub mod load;
pub mod poll;
pub mod process;
pub mod services;
pub mod summary;

pub use cluster::{Cluster, ClusterAccount, EndState, Topology, env};
pub use emulator::EmulatorProcess;
pub use load::Load;
pub use poll::{eventually, stays};
pub use process::Proc;
pub use services::{OwnRedis, PgDatabase};
pub use summary::Summary;
