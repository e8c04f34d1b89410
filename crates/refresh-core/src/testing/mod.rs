//! Test support (feature `testing`): conformance suites for backends,
//! fault-injecting wrappers, and a rotating fake upstream.

pub mod conformance;
mod fake_upstream;
mod fault_plan;
mod faulty;

pub use fake_upstream::{FakeUpstream, RotatingExecutor};
pub use fault_plan::FaultPlan;
pub use faulty::Faulty;
