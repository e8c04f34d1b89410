//! The security headers of every `serve` response (pages, assets, /v1,
//! fallbacks): a strict
//! Content-Security-Policy (scripts and styles only from this origin's
//! embedded files, no inline script or style, no framing, forms only to
//! this origin), `X-Content-Type-Options`, `Referrer-Policy`, and
//! `Cache-Control: no-store` on pages; and [`server_timing`], the
//! `Server-Timing` header of the status page's routes.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The policy.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Adds `Server-Timing: app;dur=<ms>` to a status-page response: the time
/// from the request reaching the page's route to its response being built
/// (session check, store reads, rendering), for operators' browser tools
/// and `cargo xtask bench`. It does not include sending the body.
pub(super) async fn server_timing(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}
