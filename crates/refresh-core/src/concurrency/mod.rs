//! Concurrency building blocks shared by the flow, the token provider and
//! the background refresher: the in-process single flight and the deadline
//! on one storage call.

mod bounded;
mod detached;
mod single_flight;

pub(crate) use bounded::bounded;
pub(crate) use detached::Detached;
pub(crate) use single_flight::SingleFlight;
