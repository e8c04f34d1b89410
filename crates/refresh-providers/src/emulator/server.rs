//! [`Emulator`]: the server, its connections, and the in-process handle.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

use super::config::{EmulatorConfig, Latency};
use super::faults::{Fault, FaultRates};
use super::grant::{GrantId, GrantSpec, GrantStats, SeededGrant};
use super::state::{Shared, Stats};
use super::{admin, code_assist, login, paths, reply, token};

/// A running emulator on `127.0.0.1`. Start one with [`start`](Self::start)
/// (a free port) or [`start_with`](Self::start_with); it serves on the
/// current tokio runtime and stops, closing every connection, when
/// dropped. Its methods are the in-process twin of the admin API.
pub struct Emulator {
    addr: SocketAddr,
    pub(super) shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Emulator {
    /// Starts an emulator with the default configuration on a free port.
    ///
    /// # Errors
    /// When the loopback listener cannot be bound.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(EmulatorConfig::default()).await
    }

    /// Starts an emulator with `config` (on `config.port`, 0 = free).
    ///
    /// # Errors
    /// When the loopback listener cannot be bound.
    pub async fn start_with(config: EmulatorConfig) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let router = router(Arc::clone(&shared));
        let server = tokio::spawn(accept_loop(listener, router));
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash): the base URL every
    /// provider's `with_base_url` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a grant.
    ///
    /// # Errors
    /// A spec without a provider, or a refresh token already seeded.
    pub fn try_seed(&self, spec: GrantSpec) -> Result<SeededGrant, String> {
        self.shared.seed(spec).map_err(str::to_owned)
    }

    /// Creates a grant.
    ///
    /// # Panics
    /// As [`try_seed`](Self::try_seed)'s errors.
    pub fn seed(&self, spec: GrantSpec) -> SeededGrant {
        self.try_seed(spec)
            .unwrap_or_else(|e| panic!("emulator seed: {e}"))
    }

    /// One grant's counters.
    pub fn grant(&self, id: GrantId) -> Option<GrantStats> {
        self.shared.grant(id)
    }

    /// Every refresh and access token the emulator seeded or issued, for
    /// leak tests that search logs and error texts for them.
    pub fn issued_tokens(&self) -> Vec<refresh_core::Secret> {
        self.shared.issued_tokens()
    }

    /// Every counter.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Revokes a grant (every later refresh fails); `false` when unknown.
    pub fn revoke(&self, id: GrantId) -> bool {
        self.shared.revoke(id)
    }

    /// Queues a one-shot fault.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.push_fault(fault);
    }

    /// Sets random fault rates.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.shared.set_rates(rates);
    }

    /// Clears queued faults and rates.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Sets the latency of every emulated answer.
    pub fn set_latency(&self, latency: Latency) {
        self.shared.set_latency(latency);
    }

    /// Overrides every provider's access-token lifetime (`None`: the
    /// configured ones).
    pub fn set_access_token_lifetime(&self, expires_in: Option<i64>) {
        self.shared.set_lifetime(expires_in);
    }

    /// Resolves once `done(&stats)` holds (checked after every change).
    /// Bound it with a timeout in tests.
    pub async fn wait_until(&self, done: impl Fn(&Stats) -> bool) {
        self.shared.wait_until(done).await;
    }
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task: held connections close too.
        self.server.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(paths::CLAUDE_TOKEN, post(token::claude))
        .route(paths::OPENAI_TOKEN, post(token::openai))
        .route(paths::GOOGLE_TOKEN, post(token::google))
        .route(paths::LOAD_CODE_ASSIST, post(code_assist::load))
        .route(paths::ONBOARD_USER, post(code_assist::onboard))
        .route(paths::PROJECTS, get(code_assist::projects))
        .route(paths::DRIVE_ABOUT, get(code_assist::drive))
        .merge(admin::routes())
        .merge(login::routes())
        .fallback(|| async {
            reply::google_api_error(404, "The requested URL was not found.", "NOT_FOUND")
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            login::record,
        ))
        .with_state(shared)
}

/// Lets a handler reset its own connection (the `reset` fault).
#[derive(Clone, Default)]
pub(crate) struct ConnControl {
    reset: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl ConnControl {
    /// Closes the connection with a TCP RST, without an answer.
    pub(crate) fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// A TCP stream that is closed with RST (SO_LINGER 0) when its
/// connection was reset.
struct ResettableIo {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // A zero linger makes close send RST; it does not block.
            #[allow(deprecated)]
            let _ = self.stream.set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                // Out of descriptors or a connection aborted before accept:
                // keep serving, without spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one HTTP/1.1 connection (keep-alive) until it ends or a handler
/// resets it.
async fn serve_connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let control = ConnControl::default();
    let io = TokioIo::new(ResettableIo {
        stream,
        reset: Arc::clone(&control.reset),
    });
    let handler_control = control.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(handler_control.clone());
        router.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    tokio::select! {
        _ = connection => {}
        // Dropping the connection drops the stream, which sends RST.
        () = control.wake.notified() => {}
    }
}
