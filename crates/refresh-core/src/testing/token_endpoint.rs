//! [`TokenEndpoint`]: a scriptable OAuth token endpoint on `127.0.0.1` for
//! executor tests and the
//! [`token_endpoint_mapping_suite`](super::conformance::token_endpoint_mapping_suite).
//!
//! It serves one [`ScriptedReply`] per request, in the order pushed (then a
//! fallback), records every request (method, path, headers, body) so a test
//! can assert how many token requests were made and which refresh token
//! was presented, and can close, reset or hold a connection after reading
//! the request, which models "the request was sent, no answer came".
//!
//! # Why not `wiremock`
//! `wiremock` (0.6.5, the current release) answers every matched request
//! with a `ResponseTemplate` (status, headers, body and a fixed wall-clock
//! delay): it cannot close or reset a connection after reading the request
//! (its fault-injection request, LukeMathWalker/wiremock-rs#149, is not in
//! the released API), nor hold an answer until the test releases it, and it
//! would bring hyper, hyper-util, deadpool, regex and url into every
//! `testing` build. This module needs only what tokio already has (`net`,
//! `io-util`), in about 400 lines of code: HTTP/1.1, one request per connection
//! (`Connection: close`), `Content-Length` or chunked request bodies.
//!
//! It binds `127.0.0.1` on a random port, never contacts any host, and
//! stops (closing every connection, held ones too) when dropped. It runs
//! on real time: do not drive it from a `start_paused` runtime, where tokio
//! would auto-advance timers while a request is on the wire.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head (request line and headers) read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// A response: status, headers and body.
#[derive(Clone)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Clone)]
enum Action {
    Respond(Response),
    /// Close the connection without a response (FIN).
    Close,
    /// Reset the connection without a response (RST).
    Reset,
    /// Answer nothing until released (`Some`: then answer this) or until
    /// the endpoint is dropped.
    Hold(Option<Response>),
}

/// What the endpoint does with one request. Build a response with
/// [`status`](Self::status), [`json`](Self::json) or [`html`](Self::html)
/// and refine it with [`header`](Self::header) and [`body`](Self::body);
/// or fail the exchange after the request was read with
/// [`close`](Self::close), [`reset`](Self::reset) or [`hold`](Self::hold).
/// `Content-Length` and `Connection: close` are always written by the
/// endpoint.
#[derive(Clone)]
pub struct ScriptedReply(Action);

impl ScriptedReply {
    /// A response with `status`, no headers and an empty body.
    pub fn status(status: u16) -> Self {
        Self(Action::Respond(Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }))
    }

    /// A `application/json` response with `status` and `body`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::status(status)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }

    /// A `text/html` response with `status` and `body` (a proxy's error
    /// page).
    pub fn html(status: u16, body: &str) -> Self {
        Self::status(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body)
    }

    /// Adds a response header (`Retry-After`, `Content-Type`, ...). No-op
    /// on a reply that does not respond.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Action::Respond(r) | Action::Hold(Some(r)) = &mut self.0 {
            r.headers.push((name.into(), value.into()));
        }
        self
    }

    /// Sets the response body. No-op on a reply that does not respond.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        if let Action::Respond(r) | Action::Hold(Some(r)) = &mut self.0 {
            r.body = body.into();
        }
        self
    }

    /// Reads the request, then closes the connection without answering.
    pub fn close() -> Self {
        Self(Action::Close)
    }

    /// Reads the request, then resets the connection (TCP RST) without
    /// answering: "connection reset after sending".
    pub fn reset() -> Self {
        Self(Action::Reset)
    }

    /// Reads the request and never answers; the connection stays open until
    /// the client gives up or the endpoint is dropped.
    pub fn hold() -> Self {
        Self(Action::Hold(None))
    }

    /// Holds this response until [`TokenEndpoint::release_held`]: a late
    /// answer.
    pub fn held_until_release(self) -> Self {
        match self.0 {
            Action::Respond(r) => Self(Action::Hold(Some(r))),
            other => Self(other),
        }
    }
}

impl fmt::Debug for ScriptedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Action::Respond(r) => write!(f, "Respond({}, {} bytes)", r.status, r.body.len()),
            Action::Close => f.write_str("Close"),
            Action::Reset => f.write_str("Reset"),
            Action::Hold(None) => f.write_str("Hold"),
            Action::Hold(Some(r)) => write!(f, "HoldThenRespond({})", r.status),
        }
    }
}

/// One request the endpoint read in full.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The request target (`/oauth/token?x=y`).
    pub path: String,
    /// Headers in the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether `needle` occurs in the target, a header value or the body:
    /// how a test tells which refresh token a request presented (in a JSON
    /// or form body, or a header). Pick needles of URL-safe characters
    /// (`[A-Za-z0-9._-]`), which no encoding changes.
    pub fn contains(&self, needle: &str) -> bool {
        !needle.is_empty()
            && (self.path.contains(needle)
                || self.headers.iter().any(|(_, v)| v.contains(needle))
                || self.body_text().contains(needle))
    }
}

impl fmt::Debug for RecordedRequest {
    /// Method, target and header names only: the values and the body may
    /// hold tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

struct Script {
    queue: VecDeque<ScriptedReply>,
    fallback: ScriptedReply,
    unscripted: usize,
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<RecordedRequest>>,
    received: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `request` and picks its reply.
    fn record(&self, request: RecordedRequest) -> ScriptedReply {
        self.requests().push(request);
        self.received.send_modify(|n| *n += 1);
        let mut script = self.script();
        match script.queue.pop_front() {
            Some(reply) => reply,
            None => {
                script.unscripted += 1;
                script.fallback.clone()
            }
        }
    }
}

/// A scriptable OAuth token endpoint on `127.0.0.1:<random port>`.
///
/// It serves one [`ScriptedReply`] per request, in the order
/// [pushed](Self::push), then the [fallback](Self::set_fallback), and
/// records every request read in full ([`requests`](Self::requests)) so a
/// test can count token requests and see which refresh token each
/// presented. A reply can also close, reset or hold the connection after
/// reading the request ("sent, no answer"). HTTP/1.1 only, one request per
/// connection (`Connection: close`), `Content-Length` or chunked request
/// bodies. Hand-rolled on tokio rather than `wiremock`, which cannot drop a
/// connection after reading a request nor hold an answer until released.
///
/// It never contacts any host. It runs on real time: do not drive it from a
/// `start_paused` runtime, where tokio would auto-advance timers while a
/// request is on the wire. Dropping it stops the server and closes every
/// connection, held ones too.
pub struct TokenEndpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl TokenEndpoint {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    /// Until replies are pushed, every request gets the fallback: `500`
    /// with a `text/plain` body (see [`set_fallback`](Self::set_fallback)).
    ///
    /// # Errors
    /// When the loopback listener cannot be bound.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                fallback: ScriptedReply::status(500)
                    .header("Content-Type", "text/plain")
                    .body("token endpoint: no scripted reply"),
                unscripted: 0,
            }),
            requests: Mutex::new(Vec::new()),
            received: watch::channel(0).0,
            released: watch::channel(false).0,
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash). Any path is served.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `reply` for the next request not yet answered by an earlier
    /// one.
    pub fn push(&self, reply: ScriptedReply) -> &Self {
        self.shared.script().queue.push_back(reply);
        self
    }

    /// The reply of every request once the queue is empty.
    pub fn set_fallback(&self, reply: ScriptedReply) {
        self.shared.script().fallback = reply;
    }

    /// Every request read in full so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// How many requests were read in full.
    pub fn request_count(&self) -> usize {
        *self.shared.received.borrow()
    }

    /// How many requests got the fallback because the queue was empty.
    pub fn unscripted_count(&self) -> usize {
        self.shared.script().unscripted
    }

    /// The requests whose target, headers or body contain `needle` (see
    /// [`RecordedRequest::contains`]), e.g. the token requests presenting
    /// one refresh token.
    pub fn requests_containing(&self, needle: &str) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.contains(needle))
            .cloned()
            .collect()
    }

    /// Resolves once at least `n` requests were read in full. Bound it with
    /// a timeout in a test.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut rx = self.shared.received.subscribe();
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    /// Lets every reply made with
    /// [`held_until_release`](ScriptedReply::held_until_release) answer,
    /// now and from now on.
    pub fn release_held(&self) {
        self.shared.released.send_replace(true);
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("addr", &self.addr)
            .field("requests", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task: held connections close too.
        self.server.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
                // Out of descriptors or a connection aborted before accept:
                // keep serving, without spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one connection: reads one request, records it, acts on its reply.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Ok(Some(request)) = read_request(&mut stream).await else {
        return;
    };
    match shared.record(request).0 {
        Action::Respond(response) => {
            let _ = write_response(&mut stream, &response).await;
        }
        Action::Close => {
            let _ = stream.shutdown().await;
        }
        Action::Reset => {
            // SO_LINGER 0 makes close send RST. Tokio deprecates
            // `set_linger` because a non-zero linger blocks the thread on
            // drop; a zero linger does not block.
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Action::Hold(None) => std::future::pending::<()>().await,
        Action::Hold(Some(response)) => {
            let mut released = shared.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            let _ = write_response(&mut stream, &response).await;
        }
    }
}

/// Reads one HTTP/1.1 request; `Ok(None)` when the client closed or sent
/// something that is not a complete request.
async fn read_request(stream: &mut TcpStream) -> io::Result<Option<RecordedRequest>> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD || read_more(stream, &mut buf).await? == 0 {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path)) = (request_line.next(), request_line.next()) else {
        return Ok(None);
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("Expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let chunked =
        header("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        match read_chunked(stream, rest).await? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else {
        let length = match header("Content-Length").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) if n <= MAX_BODY => n,
            Some(_) => return Ok(None),
        };
        while rest.len() < length {
            if read_more(stream, &mut rest).await? == 0 {
                return Ok(None);
            }
        }
        rest.truncate(length);
        rest
    };
    Ok(Some(RecordedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
    }))
}

/// Decodes a chunked body whose first bytes are `buf`; `None` on EOF or a
/// malformed or oversized body. Trailers are skipped.
async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(end) = find(&buf, b"\r\n") {
                break end;
            }
            if buf.len() > MAX_HEAD || read_more(stream, &mut buf).await? == 0 {
                return Ok(None);
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Ok(None);
        };
        if body.len() + size > MAX_BODY {
            return Ok(None);
        }
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers, then the empty line: read until "\r\n" at a line start.
            while !(buf.starts_with(b"\r\n") || find(&buf, b"\r\n\r\n").is_some()) {
                if read_more(stream, &mut buf).await? == 0 {
                    break;
                }
            }
            return Ok(Some(body));
        }
        while buf.len() < size + 2 {
            if read_more(stream, &mut buf).await? == 0 {
                return Ok(None);
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0_u8; 4096];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn write_response(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason_phrase(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `raw` and reads until the server closes; `Err` on a reset.
    async fn exchange(endpoint: &TokenEndpoint, raw: &[u8]) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(endpoint.addr()).await?;
        stream.write_all(raw).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("token endpoint test timed out")
    }

    const POST: &[u8] = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 23\r\n\r\n{\"refresh_token\":\"rt1\"}";

    #[tokio::test]
    async fn serves_scripted_replies_in_order_then_the_fallback() {
        let endpoint = TokenEndpoint::start().await.unwrap();
        endpoint
            .push(ScriptedReply::json(
                200,
                &serde_json::json!({"access_token": "a"}),
            ))
            .push(ScriptedReply::status(429).header("Retry-After", "7"));
        endpoint.set_fallback(ScriptedReply::html(503, "<html>down</html>"));
        let first = String::from_utf8(bounded(exchange(&endpoint, POST)).await.unwrap()).unwrap();
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.contains("Content-Type: application/json\r\n"));
        assert!(first.contains("Connection: close\r\n"));
        assert!(
            first.ends_with("\r\n\r\n{\"access_token\":\"a\"}"),
            "{first}"
        );
        let second = String::from_utf8(bounded(exchange(&endpoint, POST)).await.unwrap()).unwrap();
        assert!(second.starts_with("HTTP/1.1 429 "), "{second}");
        assert!(second.contains("Retry-After: 7\r\n"));
        let third = String::from_utf8(bounded(exchange(&endpoint, POST)).await.unwrap()).unwrap();
        assert!(third.starts_with("HTTP/1.1 503 "), "{third}");
        assert!(third.ends_with("<html>down</html>"));
        assert_eq!(endpoint.request_count(), 3);
        assert_eq!(endpoint.unscripted_count(), 1);
    }

    #[tokio::test]
    async fn records_method_path_headers_and_body_of_every_request() {
        let endpoint = TokenEndpoint::start().await.unwrap();
        bounded(exchange(&endpoint, POST)).await.unwrap();
        bounded(exchange(
            &endpoint,
            b"GET /profile?id=7 HTTP/1.1\r\nAuthorization: Bearer at9\r\n\r\n",
        ))
        .await
        .unwrap();
        let requests = endpoint.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "/oauth/token");
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert_eq!(requests[0].body_text(), r#"{"refresh_token":"rt1"}"#);
        assert_eq!(requests[1].method, "GET");
        assert_eq!(requests[1].path, "/profile?id=7");
        assert!(requests[1].body.is_empty());
        assert_eq!(endpoint.requests_containing("rt1").len(), 1);
        assert_eq!(
            endpoint.requests_containing("at9").len(),
            1,
            "header values count"
        );
        assert_eq!(
            endpoint.requests_containing("id=7").len(),
            1,
            "the target counts"
        );
        assert!(endpoint.requests_containing("").is_empty());
        let shown = format!("{:?}", requests[1]);
        assert!(
            !shown.contains("at9"),
            "Debug shows no header value: {shown}"
        );
    }

    #[tokio::test]
    async fn decodes_chunked_bodies_and_answers_expect_continue() {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let raw = b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n4\r\nrefr\r\n6;ext=1\r\nesh=rt\r\n0\r\n\r\n";
        let answer = String::from_utf8(bounded(exchange(&endpoint, raw)).await.unwrap()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 "),
            "{answer}"
        );
        assert_eq!(endpoint.requests()[0].body_text(), "refresh=rt");
    }

    #[tokio::test]
    async fn close_and_reset_answer_nothing_after_recording_the_request() {
        let endpoint = TokenEndpoint::start().await.unwrap();
        endpoint
            .push(ScriptedReply::close())
            .push(ScriptedReply::reset());
        let closed = bounded(exchange(&endpoint, POST)).await.unwrap();
        assert!(closed.is_empty(), "a close sends no bytes");
        let reset = bounded(exchange(&endpoint, POST)).await;
        assert_eq!(
            reset.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "a reset is an RST, not a clean close"
        );
        assert_eq!(endpoint.request_count(), 2, "both requests were read");
    }

    #[tokio::test]
    async fn hold_answers_only_after_release_and_plain_hold_never() {
        let endpoint = TokenEndpoint::start().await.unwrap();
        endpoint
            .push(ScriptedReply::status(200).body("late").held_until_release())
            .push(ScriptedReply::hold());
        let late = {
            let addr = endpoint.addr();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await?;
                stream.write_all(POST).await?;
                let mut out = Vec::new();
                stream.read_to_end(&mut out).await?;
                io::Result::Ok(out)
            })
        };
        bounded(endpoint.wait_for_requests(1)).await;
        assert!(!late.is_finished(), "held until released");
        endpoint.release_held();
        let late = bounded(late).await.unwrap().unwrap();
        assert!(String::from_utf8(late).unwrap().ends_with("late"));

        let mut held = TcpStream::connect(endpoint.addr()).await.unwrap();
        held.write_all(POST).await.unwrap();
        bounded(endpoint.wait_for_requests(2)).await;
        let mut byte = [0_u8; 1];
        let pending = tokio::time::timeout(Duration::from_millis(100), held.read(&mut byte)).await;
        assert!(pending.is_err(), "a plain hold answers nothing");
        drop(endpoint);
        let after_drop = bounded(held.read(&mut byte)).await;
        assert!(
            matches!(after_drop, Ok(0) | Err(_)),
            "dropping the endpoint closes held connections: {after_drop:?}"
        );
    }

    #[tokio::test]
    async fn binds_loopback_only() {
        let endpoint = TokenEndpoint::start().await.unwrap();
        assert!(endpoint.addr().ip().is_loopback());
        assert!(endpoint.url().starts_with("http://127.0.0.1:"));
    }
}
