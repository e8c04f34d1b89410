//! [`Outgoing`] requests and [`HttpResponse`]s of the HTTP layer.

use std::time::Duration;

use refresh_core::domain::ProxyUrl;

use super::body::Capped;

/// A request body with its content type.
pub(crate) enum RequestBody {
    /// No body.
    Empty,
    /// `application/json`.
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded`.
    Form(String),
}

/// One request. Holds tokens (body, `Authorization`): no `Debug`.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: reqwest::Method,
    pub(crate) url: &'a str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: RequestBody,
    /// This call's total timeout (connect to the end of the body).
    pub(crate) timeout: Duration,
    /// The account's proxy; `None` = direct.
    pub(crate) proxy: Option<&'a ProxyUrl>,
}

impl<'a> Outgoing<'a> {
    /// A `POST` of `body` to `url`.
    pub(crate) fn post(url: &'a str, body: RequestBody, timeout: Duration) -> Self {
        Self {
            method: reqwest::Method::POST,
            url,
            headers: Vec::new(),
            body,
            timeout,
            proxy: None,
        }
    }

    /// A `GET` of `url`.
    pub(crate) fn get(url: &'a str, timeout: Duration) -> Self {
        Self {
            method: reqwest::Method::GET,
            ..Self::post(url, RequestBody::Empty, timeout)
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header when `value` is set.
    pub(crate) fn header_opt(self, name: &'static str, value: Option<&str>) -> Self {
        // A blank value is how a config file (TOML has no null) turns an
        // optional header off.
        match value.filter(|v| !v.trim().is_empty()) {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Routes the request through `proxy`.
    pub(crate) fn via(mut self, proxy: Option<&'a ProxyUrl>) -> Self {
        self.proxy = proxy;
        self
    }
}

/// A response read under the size cap. The body may hold tokens: no
/// `Debug`.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    /// The raw `Retry-After` header.
    pub(crate) retry_after: Option<String>,
    /// The raw `Date` header: the server's clock, against which an
    /// HTTP-date `Retry-After` is read.
    pub(crate) date: Option<String>,
    pub(crate) body: Capped,
}

impl HttpResponse {
    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body when it was read whole, else empty.
    pub(crate) fn body_or_empty(&self) -> &[u8] {
        match &self.body {
            Capped::Complete(body) => body,
            Capped::TooLarge => &[],
        }
    }
}
