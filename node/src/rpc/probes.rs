//! What needs no cookie: `GET /` says what the port is, `/healthy` and `/ready` answer
//! probes (Kubernetes' liveness and readiness; 200 or 503 with one line saying why), and
//! `/metrics` is for Prometheus. The same routes are served on `--metrics-addr`.

use super::RpcContext;
use crate::metrics::{metrics, Figures, NetworkFigures};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// A node at most this many blocks below the best chain a peer has proved is ready.
pub const READY_LAG: u64 = 3;

pub fn routes() -> Router<Arc<RpcContext>> {
    Router::new()
        .route("/healthy", get(healthy))
        .route("/ready", get(ready))
        .route("/metrics", get(prometheus))
}

/// The router for `--metrics-addr`: the probes and metrics, and `GET /` listing them.
pub fn router(context: Arc<RpcContext>) -> Router {
    routes().route("/", get(about_metrics)).with_state(context)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

/// `GET /` on the RPC port.
pub async fn about_rpc(State(context): State<Arc<RpcContext>>) -> Response {
    let spec = context.node.spec();
    text(
        StatusCode::OK,
        format!(
            "apiary-node {} (chain {}): JSON-RPC 2.0 — POST / with HTTP Basic auth from \
             <datadir>/rpc.cookie (apiary-cli does this for you); GET /healthy, /ready and \
             /metrics need no cookie",
            env!("CARGO_PKG_VERSION"),
            spec.chain_id
        ),
    )
}

async fn about_metrics() -> Response {
    text(
        StatusCode::OK,
        format!(
            "apiary-node {}: GET /metrics (Prometheus), /healthy, /ready",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

/// Up: the process answers and its store is sound (a full disk only pauses writing, which
/// a restart would not mend, so it does not fail this probe).
async fn healthy(State(context): State<Arc<RpcContext>>) -> Response {
    match context.node.health().fatal_reason() {
        None => text(StatusCode::OK, "healthy".into()),
        Some(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}"),
        ),
    }
}

/// Whether the node can serve what is current: up, writing, with peers, and within
/// `READY_LAG` blocks of the best chain a peer has proved.
pub fn readiness(context: &RpcContext) -> Result<String, String> {
    let node = &context.node;
    if let Some(reason) = node.health().fatal_reason() {
        return Err(format!("not ready: {reason}"));
    }
    if let Some(full) = node.health().storage_full() {
        return Err(format!("not ready: writing is paused: {full}"));
    }
    let network = context
        .network
        .as_ref()
        .ok_or("not ready: the network is not running")?;
    let height = node.published_tip().height.0;
    caught_up(
        network.peer_count(),
        height,
        network.sync_progress().best_known_height,
    )
}

/// Ready as far as the network goes: with `peers`, at `height`, the best chain a peer has
/// proved being at `best`.
fn caught_up(peers: usize, height: u64, best: u64) -> Result<String, String> {
    if peers == 0 {
        return Err("not ready: no peers".into());
    }
    if height.saturating_add(READY_LAG) < best {
        return Err(format!(
            "not ready: at height {height}, {} blocks below the best proved chain ({best})",
            best - height
        ));
    }
    Ok(format!("ready: height {height}, {peers} peers"))
}

async fn ready(State(context): State<Arc<RpcContext>>) -> Response {
    match tokio::task::spawn_blocking(move || readiness(&context)).await {
        Ok(Ok(line)) => text(StatusCode::OK, line),
        Ok(Err(line)) => text(StatusCode::SERVICE_UNAVAILABLE, line),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("not ready: {e}")),
    }
}

/// The state figures of a scrape, read from the node and its network.
fn figures(context: &RpcContext) -> Figures {
    let node = &context.node;
    let tip = node.published_tip();
    let (mempool_txs, mempool_bytes) = {
        let guard = node.lock();
        (guard.mempool.len(), guard.mempool.bytes())
    };
    let network = context.network.as_ref().map(|network| {
        let peers = network.peers();
        let inbound = peers.iter().filter(|p| p.inbound).count();
        let progress = network.sync_progress();
        NetworkFigures {
            inbound,
            outbound: peers.len() - inbound,
            syncing: network.is_syncing(),
            best_known_height: progress.best_known_height,
            blocks_per_s: progress.blocks_per_s,
        }
    });
    Figures {
        height: tip.height,
        tip_timestamp_ms: tip.timestamp_ms,
        mempool_txs,
        mempool_bytes,
        network,
        store_path: node.health().store_path(),
    }
}

async fn prometheus(State(context): State<Arc<RpcContext>>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || metrics().render(figures(&context))).await;
    match rendered {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_peers_and_a_tip_near_the_best_proved_chain() {
        assert!(caught_up(0, 10, 10).is_err());
        assert!(caught_up(1, 10, 10).is_ok());
        assert!(caught_up(1, 10, 10 + READY_LAG).is_ok());
        let behind = caught_up(1, 10, 11 + READY_LAG).unwrap_err();
        assert!(behind.contains(&format!("{} blocks below", READY_LAG + 1)));
        // Ahead of what peers proved (we mined) is ready.
        assert!(caught_up(2, 50, 10).is_ok());
    }
}
