//! Test support (feature `testing`): conformance suites for backends and
//! plugins, fault-injecting wrappers, a rotating fake upstream, and a
//! scriptable token endpoint on loopback.

pub mod conformance;
mod fake_upstream;
mod fault_plan;
mod faulty;
mod token_endpoint;

pub use fake_upstream::{FakeUpstream, RotatingExecutor};
pub use fault_plan::FaultPlan;
pub use faulty::Faulty;
pub use token_endpoint::{RecordedRequest, ScriptedReply, TokenEndpoint};
