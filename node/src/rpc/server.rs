//! The RPC's HTTP/1.1 server: at most `max_connections` served at once, far below the file
//! descriptor limit. When full, a new connection waits a moment for a slot; a connection
//! idle after its answers, or silent since it opened, makes way (so idle or slow clients
//! never lock others out); and what cannot be served is still answered: 503, a JSON-RPC
//! error and `Retry-After`. Every request that reaches the node gets an answer. A deadline
//! for each request's headers; idle connections closed after a while.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// A new connection waits this long for a slot before its requests are answered "busy".
const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// How often a waiting connection looks for a slot when none was freed.
const QUEUE_POLL: Duration = Duration::from_millis(100);
/// A connection that has sent no request for this long may be closed to make way (a
/// client sends its request as soon as it connects).
const SILENT_GRACE: Duration = Duration::from_millis(500);
/// How long a closing connection is kept to answer "busy" to a request already on its way.
const CLOSING_LINGER: Duration = Duration::from_secs(2);

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
    /// Requests being answered on it, and `CLOSING` once it was told to make way: set in
    /// one step, so a request either began before (and is answered) or meets the flag (and
    /// is answered "busy"). Nothing that reached the node goes unanswered.
    state: AtomicU64,
    /// Whether it has been answered at least once: only then is it idle when not busy.
    answered: AtomicBool,
    /// Milliseconds since the server started when it was opened or last became idle.
    since_ms: AtomicU64,
    close: Notify,
}

/// In `Connection::state`: the connection makes way for another; requests on it are
/// answered "busy" and it closes soon after.
const CLOSING: u64 = 1 << 63;

impl Connection {
    fn new(now_ms: u64, closing: bool) -> Connection {
        Connection {
            state: AtomicU64::new(if closing { CLOSING } else { 0 }),
            answered: AtomicBool::new(false),
            since_ms: AtomicU64::new(now_ms),
            close: Notify::new(),
        }
    }

    /// A request arrived: false when the connection is closing (answer it "busy").
    fn begin(&self) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state & CLOSING == 0).then_some(state + 1)
            })
            .is_ok()
    }

    /// Marks it closing if no request is being answered on it.
    fn close_if_quiet(&self) -> bool {
        self.state
            .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn quiet(&self) -> bool {
        self.state.load(Ordering::Acquire) == 0
    }
}

/// The connections open now, to pick which to close when full.
struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    started: Instant,
    max: usize,
    /// A slot came free: one waiting connection may take it.
    freed: Notify,
}

impl Connections {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Registers a new connection when there is room, or makes room: a connection idle
    /// after its answers first (the idlest), else one that has sent no request for
    /// `SILENT_GRACE` (the oldest). None: full of connections in use.
    fn admit(&self, id: u64) -> Option<Arc<Connection>> {
        let now = self.now_ms();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max {
            let since = |c: &Connection| c.since_ms.load(Ordering::Acquire);
            let idle = open
                .iter()
                .filter(|(_, c)| c.quiet() && c.answered.load(Ordering::Acquire))
                .min_by_key(|(_, c)| since(c));
            let silent = || {
                open.iter()
                    .filter(|(_, c)| {
                        c.quiet()
                            && !c.answered.load(Ordering::Acquire)
                            && now.saturating_sub(since(c)) >= SILENT_GRACE.as_millis() as u64
                    })
                    .min_by_key(|(_, c)| since(c))
            };
            let (&victim, connection) = idle.or_else(silent)?;
            if !connection.close_if_quiet() {
                // A request began on it this instant: it stays.
                return None;
            }
            connection.close.notify_one();
            open.remove(&victim);
        }
        let connection = Arc::new(Connection::new(now, false));
        open.insert(id, connection.clone());
        Some(connection)
    }

    /// Admits `id`, waiting up to `QUEUE_WAIT` for a slot; None when none came free. It
    /// looks again when a slot is freed, and every `QUEUE_POLL` (a silent connection may
    /// have passed its grace meanwhile).
    async fn admit_or_wait(&self, id: u64) -> Option<Arc<Connection>> {
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        loop {
            if let Some(connection) = self.admit(id) {
                return Some(connection);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let _ = tokio::time::timeout_at(deadline.min(now + QUEUE_POLL), self.freed.notified())
                .await;
        }
    }

    fn leave(&self, id: u64) {
        let removed = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if removed.is_some() {
            self.freed.notify_one();
        }
    }

    /// Closes connections idle longer than `IDLE_TIMEOUT` after their last answer.
    fn reap(&self) {
        let now = self.now_ms();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let before = open.len();
        open.retain(|_, c| {
            let idle = c.answered.load(Ordering::Acquire)
                && now.saturating_sub(c.since_ms.load(Ordering::Acquire))
                    > IDLE_TIMEOUT.as_millis() as u64
                && c.close_if_quiet();
            if idle {
                c.close.notify_one();
            }
            !idle
        });
        for _ in open.len()..before {
            self.freed.notify_one();
        }
    }
}

/// Marks a connection busy while a request on it is answered.
struct Busy<'a> {
    connection: &'a Connection,
    connections: &'a Connections,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.connection
            .since_ms
            .store(self.connections.now_ms(), Ordering::Release);
        self.connection.answered.store(true, Ordering::Release);
        self.connection.state.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer to a request on a connection that makes way for others: its body is read
/// first (closing a socket with unread bytes resets it, and the client could lose the
/// answer), then 503 with a JSON-RPC error that says why and `Retry-After`.
async fn answer_busy(request: hyper::Request<hyper::body::Incoming>) -> axum::response::Response {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(request.into_body(), super::MAX_BODY_BYTES).collect();
    let body = match tokio::time::timeout(CLOSING_LINGER, body).await {
        Ok(Ok(collected)) => Some(collected.to_bytes()),
        _ => None,
    };
    super::server_busy(body.as_deref())
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
        freed: Notify::new(),
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
        let (router, connections, mut stopping) =
            (router.clone(), connections.clone(), stopping.subscribe());
        tasks.spawn(async move {
            // No slot within the wait: its requests are still read, and answered "busy".
            let admitted = connections.admit_or_wait(id).await;
            let connection = admitted
                .clone()
                .unwrap_or_else(|| Arc::new(Connection::new(connections.now_ms(), true)));
            let service = {
                let (connection, connections) = (connection.clone(), connections.clone());
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (router, connection, connections) =
                        (router.clone(), connection.clone(), connections.clone());
                    async move {
                        if !connection.begin() {
                            return Ok(answer_busy(request).await);
                        }
                        let _busy = Busy {
                            connection: &connection,
                            connections: &connections,
                        };
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
            if admitted.is_none() {
                // Answered "busy" if it asks in time; then closed.
                let _ = tokio::time::timeout(CLOSING_LINGER, &mut serving).await;
                return;
            }
            tokio::select! {
                _ = &mut serving => {}
                // Made way for a newer connection, or idle too long: a request that meets
                // it now is answered "busy"; then it closes.
                _ = connection.close.notified() => {
                    let _ = tokio::time::timeout(CLOSING_LINGER, &mut serving).await;
                }
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
