//! The RPC's HTTP/1.1 server: at most `max_connections` at once, far below the file
//! descriptor limit (when full, the connection idle longest is closed to make way, so idle
//! or slow clients never lock others out), a deadline for each request's headers, and
//! idle connections closed after a while. Each request is then handled by the router.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

/// A client must send a whole request head within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request under way is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop waits for requests under way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often idle connections are looked for.
const REAP_INTERVAL: Duration = Duration::from_secs(5);

/// Connections the server holds at most when nobody says: a quarter of the descriptors
/// this process may open (peers, RocksDB's files and the rest need the others), at most
/// 256.
pub fn default_max_connections() -> usize {
    (soft_fd_limit() / 4).clamp(8, 256) as usize
}

/// WebSocket connections held at most: half the descriptors this process may open, at
/// most 4096 (each idle one costs a few kilobytes).
pub fn default_max_subscribers() -> usize {
    (soft_fd_limit() / 2).clamp(8, 4096) as usize
}

fn soft_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

/// Raises this process's soft descriptor limit to its hard limit (at most 65536), as
/// bitcoind does: the default 1024 of many systems is too few for peers, RocksDB's files
/// and a thousand subscribers.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            let wanted = limit.rlim_max.min(65536);
            if limit.rlim_cur < wanted {
                limit.rlim_cur = wanted;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

/// One accepted connection, as the server sees it.
struct Connection {
    /// Requests being answered on it.
    busy: AtomicUsize,
    /// Milliseconds since the server started when it last became idle.
    idle_since_ms: AtomicU64,
    close: Notify,
}

/// The connections open now, to pick which to close when full.
struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    started: Instant,
    max: usize,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Registers a new connection, closing the one idle longest if the server is full.
    /// None: full of connections that are all answering requests.
    fn admit(&self, id: u64) -> Option<Arc<Connection>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max {
            let idlest = open
                .iter()
                .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.idle_since_ms.load(Ordering::Acquire))
                .map(|(id, _)| *id)?;
            if let Some(closed) = open.remove(&idlest) {
                closed.close.notify_one();
            }
        }
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        open.insert(id, connection.clone());
        Some(connection)
    }

    fn leave(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Closes connections idle longer than `IDLE_TIMEOUT`.
    fn reap(&self) {
        let now = self.now_ms();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, c| {
            let idle = c.busy.load(Ordering::Acquire) == 0
                && now.saturating_sub(c.idle_since_ms.load(Ordering::Acquire))
                    > IDLE_TIMEOUT.as_millis() as u64;
            if idle {
                c.close.notify_one();
            }
            !idle
        });
    }
}

/// Marks a connection busy while a request on it is answered.
struct Busy<'a> {
    connection: &'a Connection,
    connections: &'a Connections,
}

impl<'a> Busy<'a> {
    fn new(connection: &'a Connection, connections: &'a Connections) -> Busy<'a> {
        connection.busy.fetch_add(1, Ordering::AcqRel);
        Busy {
            connection,
            connections,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.connection
            .idle_since_ms
            .store(self.connections.now_ms(), Ordering::Release);
        self.connection.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer on a connection refused because every slot is answering a request.
fn busy_response() -> Vec<u8> {
    let body = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"server busy: every connection is answering a request; try again"},"id":null}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `stop` resolves, then lets requests under way
/// finish (for a while). An accept error (out of descriptors) is retried shortly after.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) {
    let connections = Arc::new(Connections {
        open: Mutex::new(HashMap::new()),
        started: Instant::now(),
        max: max_connections.max(1),
    });
    let stopping = Arc::new(tokio::sync::watch::channel(false).0);
    let mut tasks = tokio::task::JoinSet::new();
    let mut reap = tokio::time::interval(REAP_INTERVAL);
    let mut next_id = 0u64;
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            _ = reap.tick() => {
                connections.reap();
                while tasks.try_join_next().is_some() {}
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "RPC cannot accept a connection; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Notifications and answers are small writes: none may wait for the client's
        // delayed acknowledgement of the one before (Nagle).
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let Some(connection) = connections.admit(id) else {
            tasks.spawn(async move {
                // A couple of hundred bytes: one write to a new socket takes them all.
                if let Ok(Ok(())) = tokio::time::timeout(HEADER_TIMEOUT, stream.writable()).await {
                    let _ = stream.try_write(&busy_response());
                }
            });
            continue;
        };
        let (router, connections, mut stopping) =
            (router.clone(), connections.clone(), stopping.subscribe());
        tasks.spawn(async move {
            let service = {
                let (connection, connections) = (connection.clone(), connections.clone());
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (router, connection, connections) =
                        (router.clone(), connection.clone(), connections.clone());
                    async move {
                        let _busy = Busy::new(&connection, &connections);
                        router.oneshot(request.map(axum::body::Body::new)).await
                    }
                })
            };
            let serving = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(serving);
            tokio::select! {
                _ = &mut serving => {}
                // Made way for a newer connection, or idle too long: just close it.
                _ = connection.close.notified() => {}
                // The only change is to "stop".
                _ = stopping.changed() => {
                    serving.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, serving).await;
                }
            }
            connections.leave(id);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}
