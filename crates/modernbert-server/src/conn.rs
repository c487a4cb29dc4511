//! The HTTP/1 connections: accept loop, per-connection timeouts, and shutdown with a deadline.
//!
//! axum's `serve` has no read timeouts, so a client that stops half-way through its headers (or
//! just connects) held a connection forever and kept the process alive after SIGTERM. Here each
//! connection is served by hyper directly, with:
//!
//! * a **header read timeout** (`--header-read-timeout`): from the first byte of a request's head
//!   (or from accepting the connection) to its end, enforced by [`HeadTimeout`] around the
//!   socket; the connection is closed when it passes;
//! * an **idle keep-alive timeout** (`--keep-alive-timeout`): hyper's header timer, which runs
//!   from the end of a response until the next request's head is complete;
//! * a **body read timeout** (`--body-read-timeout`): the JSON extractor
//!   ([`crate::state::JsonBody`]) answers 408 when the body is not complete in time;
//! * a **shutdown deadline** (`--shutdown-timeout`): on shutdown the listener closes, idle
//!   connections close at once, open requests may finish until the deadline; then the requests
//!   still open are answered 503 ([`Shutdown::abort`]), and connections still open a second later
//!   are dropped.

use crate::state::AppState;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// Connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Most time to receive a request's head, from its first byte (or from accept).
    pub header: Duration,
    /// Most time a keep-alive connection may wait for its next request.
    pub idle: Duration,
    /// Most time, after shutdown begins, for open requests to finish.
    pub shutdown: Duration,
}

/// Serves `app` on `listener` until `stop` resolves, then shuts down within the deadline.
/// Returns whether the deadline passed with requests still open.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    state: Arc<AppState>,
    timeouts: Timeouts,
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.spawn(connection(stream, app.clone(), timeouts, closing_rx.clone()));
            }
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(timeouts.shutdown, drained).await.is_ok() {
        return false;
    }
    tracing::warn!(
        open = connections.len(),
        "shutdown deadline of {:?} passed: answering open requests with 503",
        timeouts.shutdown
    );
    state.shutdown.abort();
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(1), drained).await.is_err() {
        connections.abort_all();
    }
    true
}

async fn connection(stream: TcpStream, app: Router, timeouts: Timeouts, mut closing: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(HeadTimeout::new(stream, timeouts.header));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's header timer starts when the connection waits for a request head, so it bounds the
        // idle time between requests plus the head itself; HeadTimeout bounds the head alone.
        .header_read_timeout(timeouts.idle + timeouts.header)
        .keep_alive(true);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => { log_connection_end(result); return; }
        _ = closing.wait_for(|&c| c) => {}
    }
    // Shutdown: close when idle, else after the current response.
    conn.as_mut().graceful_shutdown();
    log_connection_end(conn.await);
}

fn log_connection_end(result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// Shutdown signals shared with the handlers.
pub struct Shutdown {
    aborted: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self { aborted: watch::channel(false).0 }
    }
}

impl Shutdown {
    /// The shutdown deadline passed: requests still open are answered 503.
    pub fn abort(&self) {
        let _ = self.aborted.send(true);
    }

    /// Resolves once [`Shutdown::abort`] was called.
    pub async fn aborted(&self) {
        let mut rx = self.aborted.subscribe();
        let _ = rx.wait_for(|&a| a).await;
    }
}

/// Where the socket is in the request/response cycle, as seen from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (or reading) a request head; the deadline runs.
    Head,
    /// The head is complete: the body and the answer (no deadline here).
    Served,
    /// A response was written: the next bytes read start a new head (the idle time before them
    /// is hyper's keep-alive timer's).
    Idle,
}

/// A socket that fails reads once a request head takes longer than `timeout` from its first
/// byte (from accept for a new connection). The end of a head is found by its blank line; a
/// write (the response) re-arms the detection for the next request.
pub struct HeadTimeout {
    inner: TcpStream,
    timeout: Duration,
    phase: Phase,
    /// How much of `\r\n\r\n` the last bytes matched.
    matched: u8,
    deadline: Pin<Box<Sleep>>,
}

impl HeadTimeout {
    /// Wraps an accepted socket; the head deadline starts now.
    pub fn new(inner: TcpStream, timeout: Duration) -> Self {
        Self { inner, timeout, phase: Phase::Head, matched: 0, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    fn scan(&mut self, bytes: &[u8]) {
        const END: &[u8; 4] = b"\r\n\r\n";
        for &b in bytes {
            self.matched = if b == END[self.matched as usize] {
                self.matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            if self.matched == 4 {
                self.phase = Phase::Served;
                self.matched = 0;
                return;
            }
        }
    }
}

impl AsyncRead for HeadTimeout {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    if this.phase == Phase::Idle {
                        this.phase = Phase::Head;
                        this.matched = 0;
                        let at = Instant::now() + this.timeout;
                        this.deadline.as_mut().reset(at);
                    }
                    if this.phase == Phase::Head {
                        this.scan(new);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.phase == Phase::Head && this.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("request head not received within {:?}", this.timeout),
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl HeadTimeout {
    fn wrote(&mut self, first: &[u8], n: usize) {
        // "100 Continue" is not the answer: the body follows.
        if n > 0 && self.phase == Phase::Served && !first.starts_with(b"HTTP/1.1 100 ") {
            self.phase = Phase::Idle;
        }
    }
}

impl AsyncWrite for HeadTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.wrote(buf, n);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| b);
            self.wrote(first, n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
