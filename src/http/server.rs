//! The HTTP server: an accept loop over hyper's connections (HTTP/1, and HTTP/2 over TLS),
//! so that slow and idle clients are bounded (a deadline for each request's head and TLS
//! handshake, an idle timeout, a cap on open connections) and a shutdown lets the
//! requests in flight finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::HttpSettings;

/// The connection limits of `http.*`.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// What hyper reads of a request head before it refuses it itself (431 without a
    /// body): well above what the router refuses with a JSON body.
    pub head_buffer: usize,
}

impl ConnLimits {
    pub fn from_settings(h: &HttpSettings) -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_millis(h.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(h.idle_timeout_ms.max(1)),
            max_connections: h.max_connections.max(1),
            head_buffer: (4 * (h.max_header_bytes + super::MAX_TARGET_BYTES)).max(65536),
        }
    }
}

/// When a connection last received bytes, in milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_until(&self, idle: Duration) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// A client's stream that notes when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests of one connection between their head and their response.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type Http = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// every connection finish the request it is serving, and returns once all are closed.
/// With `tls`, every connection is TLS and may speak HTTP/2 (ALPN); without, HTTP/1.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<Arc<super::tls::Certificates>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = Http::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.head_buffer)
        .max_headers(2 * super::MAX_HEADERS);
    http.http2().timer(TokioTimer::new()).max_concurrent_streams(128).max_header_list_size(limits.head_buffer as u32);
    let http = Arc::new(if tls.is_some() { http } else { http.http1_only() });
    // One permit per open connection; all of them back means every connection is closed.
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: try again shortly.
                    tracing::warn!(error = ?e.to_string(), "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            http: http.clone(),
            router: router.clone(),
            peer,
            idle: limits.idle_timeout,
            stop: stop_rx.clone(),
            activity: Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }),
        };
        let watched = Watched { inner: stream, activity: conn.activity.clone() };
        let (tls, handshake) = (tls.clone(), limits.header_read_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let Some(certs) = tls else {
                return conn.serve(watched).await;
            };
            // The handshake is bounded like a request head.
            match tokio::time::timeout(handshake, certs.acceptor().accept(watched)).await {
                Ok(Ok(stream)) => conn.serve(stream).await,
                Ok(Err(e)) => tracing::debug!(peer = ?peer, error = ?e.to_string(), "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = ?peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection has ended once all permits are back.
    let _ = open.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

/// One client connection.
struct Conn {
    http: Arc<Http>,
    router: Router,
    peer: std::net::SocketAddr,
    idle: Duration,
    stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
}

impl Conn {
    /// Serves requests until the client closes, the connection is idle too long, or the
    /// server shuts down (then the requests in flight finish first).
    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let requests = in_flight.clone();
        let (router, peer, idle) = (self.router.clone(), self.peer, self.idle);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let guard = InFlight::enter(&requests);
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let res = router.oneshot(req.map(Body::new)).await;
                drop(guard);
                res
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        let mut check_at = self.activity.idle_until(idle);
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = ?peer, error = ?e.to_string(), "connection ended");
                    }
                    break;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(check_at.into()), if !closing => {
                    let now = Instant::now();
                    check_at = self.activity.idle_until(idle);
                    if in_flight.load(Ordering::Relaxed) > 0 {
                        // A request being served is bounded by the request timeout.
                        check_at = check_at.max(now + idle);
                    } else if now >= check_at {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}
