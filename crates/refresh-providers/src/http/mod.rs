//! The one HTTP layer every executor shares: pooled `reqwest` clients per
//! proxy ([`HttpClients`]), timeouts bounded by the refresh deadline, a
//! response-size cap enforced while streaming, and the mapping of transport
//! failures to [`ProviderError`](refresh_core::ProviderError).

mod body;
mod clients;
mod config;
mod request;
mod transport_error;

pub(crate) use body::Capped;
pub use clients::HttpClients;
pub use config::HttpConfig;
pub(crate) use request::{HttpResponse, Outgoing, RequestBody};

/// The error of a 2xx body over the size cap: the upstream processed the
/// request, so this is an `InvalidResponse` (the token may be consumed).
pub(crate) fn too_large(what: &str) -> refresh_core::ProviderError {
    refresh_core::ProviderError::InvalidResponse {
        reason: format!("{what} is larger than the response size limit"),
    }
}
