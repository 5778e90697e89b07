//! JSON-RPC over WebSocket with subscriptions, as Ethereum's `eth_subscribe`: `subscribe
//! {topic}` answers a subscription id, then `subscription` notifications carry it.
//! `/ws` (cookie) also serves every other method; `/explorer/ws` (public chain data, no
//! cookie) only subscriptions.
//!
//! Memory stays bounded however slow a client: notifications come off the node's one
//! event ring (`events::EVENT_RING`), each write waits at most `SEND_TIMEOUT`, and a
//! client that falls a whole ring behind gets a final notice and a close.

mod address;

use super::{answer, answer_with, null_id, RpcContext, RpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::events::NodeEvent;
use address::AddressWatch;
use apiary_core::{AddressPrefix, TxId};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Largest message a client may send: a call, never a block.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// A client that takes no bytes for this long is cut off.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Mempool counts are batched to one notification per this; peers are looked at as often.
const TICK: Duration = Duration::from_millis(500);
/// Confirmations an address subscription reports at most, unless asked for more.
const DEFAULT_CONFIRMATIONS: u64 = 6;
const MAX_CONFIRMATIONS: u64 = 1000;
/// Close code 1008, "policy violation": the client read too slowly.
const CLOSE_TOO_SLOW: u16 = 1008;

/// WebSocket connections open at once, over both paths: each holds a descriptor.
static SLOTS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> = std::sync::LazyLock::new(|| {
    Arc::new(tokio::sync::Semaphore::new(
        super::server::default_max_subscribers(),
    ))
});

/// Upgrades the request to a WebSocket served with `access`, or says the node is full.
pub fn upgrade(
    upgrade: axum::extract::ws::WebSocketUpgrade,
    context: Arc<RpcContext>,
    access: Access,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(slot) = SLOTS.clone().try_acquire_owned() else {
        return super::refusal(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            RpcError::new(
                super::SERVER_BUSY,
                "server busy: every WebSocket slot is taken; try again later",
            ),
        );
    };
    // Small buffers: most sockets idle, and a thousand of them should cost little. A
    // write beyond the buffer waits for the socket (and SEND_TIMEOUT bounds that).
    upgrade
        .read_buffer_size(4 << 10)
        .write_buffer_size(16 << 10)
        .max_write_buffer_size(4 << 20)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            crate::metrics::metrics().ws_opened();
            serve(socket, context, access).await;
            crate::metrics::metrics().ws_closed();
            drop(slot);
        })
        .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Cookie given: every method.
    Full,
    /// The explorer's socket: subscriptions only.
    Public,
}

enum Topic {
    /// A new block template paying this address on every new tip (miners).
    Templates(apiary_core::Address),
    Tips,
    Address(AddressWatch),
    Peers(BTreeMap<String, crate::p2p::PeerInfo>),
    Mempool(Option<(usize, usize)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    topic: String,
    address: Option<String>,
    /// Address topic: report confirmations up to this many (default 6).
    confirmations: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsubscribe {
    subscription: String,
}

struct Connection {
    context: Arc<RpcContext>,
    access: Access,
    subscriptions: BTreeMap<u64, Topic>,
    next_id: u64,
}

/// Why a connection ended early.
enum Cut {
    /// The client closed it, or the socket failed.
    Gone,
    /// The client read too slowly.
    TooSlow(String),
}

pub async fn serve(socket: WebSocket, context: Arc<RpcContext>, access: Access) {
    let (mut sink, mut stream) = socket.split();
    let mut events = context.node.events().subscribe();
    let mut connection = Connection {
        context,
        access,
        subscriptions: BTreeMap::new(),
        next_id: 0,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let cut = loop {
        let outgoing = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => connection.request(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => vec![error_text(RpcError::new(
                    super::INVALID_REQUEST,
                    "send JSON-RPC calls as text messages",
                ))],
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break Cut::Gone,
            },
            event = events.recv() => match event {
                Ok(event) => {
                    let mut out = connection.on_event(&event);
                    if matches!(*event, NodeEvent::Tip { .. }) {
                        out.extend(connection.templates(None).await);
                    }
                    out
                }
                Err(RecvError::Lagged(missed)) => break Cut::TooSlow(format!(
                    "the client fell {missed} events behind; reconnect and read faster"
                )),
                Err(RecvError::Closed) => break Cut::Gone,
            },
            // Only sockets following peers or the mempool wake on the tick.
            _ = tick.tick(), if connection.wants_tick() => connection.on_tick(),
        };
        if let Err(cut) = send_all(&mut sink, outgoing).await {
            break cut;
        }
    };
    if let Cut::TooSlow(reason) = cut {
        crate::metrics::metrics().subscriber_cut_off();
        tracing::debug!(%reason, "WebSocket client cut off");
        let notice = json!({
            "jsonrpc": "2.0",
            "method": "subscription_closed",
            "params": {"reason": reason},
        });
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            sink.send(Message::Text(notice.to_string().into())).await?;
            sink.send(Message::Close(Some(CloseFrame {
                code: CLOSE_TOO_SLOW,
                reason: "too slow".into(),
            })))
            .await
        })
        .await;
    }
}

async fn send_all(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    messages: Vec<String>,
) -> Result<(), Cut> {
    if messages.is_empty() {
        return Ok(());
    }
    let count = messages.len();
    for (i, text) in messages.into_iter().enumerate() {
        let message = Message::Text(text.into());
        // Fed without flushing but the last: one write for a block's worth.
        let sent = if i + 1 == count {
            tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await
        } else {
            tokio::time::timeout(SEND_TIMEOUT, sink.feed(message)).await
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Cut::Gone),
            Err(_) => {
                return Err(Cut::TooSlow(format!(
                    "the client read nothing for {} s",
                    SEND_TIMEOUT.as_secs()
                )))
            }
        }
    }
    Ok(())
}

fn error_text(error: RpcError) -> String {
    serde_json::to_string(&super::error_response(null_id(), error)).expect("a reply is JSON")
}

fn notification(id: u64, topic: &str, result: impl serde::Serialize) -> String {
    json!({
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {"subscription": id.to_string(), "topic": topic, "result": result},
    })
    .to_string()
}

impl Connection {
    async fn request(&mut self, text: &str) -> Vec<String> {
        let Ok(call) = serde_json::from_str::<Box<RawValue>>(text) else {
            return vec![error_text(RpcError::new(
                super::PARSE_ERROR,
                "parse error: a message must be one JSON-RPC call",
            ))];
        };
        #[derive(Deserialize)]
        struct Peek {
            method: Option<Value>,
        }
        let method = serde_json::from_str::<Peek>(call.get())
            .ok()
            .and_then(|p| p.method)
            .and_then(|m| m.as_str().map(str::to_owned));
        let mut follow_up = Vec::new();
        let mut subscribed = None;
        let reply = match method.as_deref() {
            Some("subscribe") => answer_with(&call, |_, params| {
                let (id, first) = self.subscribe(super::methods::parse(params)?)?;
                follow_up = first;
                subscribed = Some(id);
                Ok(Value::String(id.to_string()))
            }),
            Some("unsubscribe") => answer_with(&call, |_, params| {
                let Unsubscribe { subscription } = super::methods::parse(params)?;
                let removed = subscription
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| self.subscriptions.remove(&id));
                Ok(Value::Bool(removed.is_some()))
            }),
            _ if self.access == Access::Full => {
                let context = self.context.clone();
                tokio::task::spawn_blocking(move || answer(&context, &call))
                    .await
                    .ok()
                    .flatten()
            }
            _ => answer_with(&call, |method, _| {
                Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    format!(
                        "{method:?} is not served on the public socket: only subscribe and \
                         unsubscribe (use /ws with the cookie for more)"
                    ),
                ))
            }),
        };
        let mut out: Vec<String> = reply
            .map(|r| serde_json::to_string(&r).expect("a reply is JSON"))
            .into_iter()
            .collect();
        out.extend(follow_up);
        // A miner gets its first template at once.
        if let Some(id) = subscribed {
            out.extend(self.templates(Some(id)).await);
        }
        out
    }

    /// A fresh template for each `templates` subscription (or only for `only`), built on a
    /// blocking thread: a template selects from the mempool and works out a state root,
    /// which must not hold up the runtime's other sockets.
    async fn templates(&self, only: Option<u64>) -> Vec<String> {
        let due: Vec<(u64, apiary_core::Address)> = self
            .subscriptions
            .iter()
            .filter(|(id, _)| only.is_none_or(|only| only == **id))
            .filter_map(|(id, topic)| match topic {
                Topic::Templates(miner) => Some((*id, *miner)),
                _ => None,
            })
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        let context = self.context.clone();
        tokio::task::spawn_blocking(move || {
            due.into_iter()
                .filter_map(|(id, miner)| template_notification(&context, id, miner))
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Adds a subscription; returns its id and any notifications due at once.
    fn subscribe(&mut self, params: Subscribe) -> Result<(u64, Vec<String>), RpcError> {
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(RpcError::new(
                INVALID_PARAMS,
                format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            ));
        }
        let only_address = |topic: &str| -> Result<(), RpcError> {
            if params.address.is_some() || params.confirmations.is_some() {
                return Err(RpcError::invalid_params(format!(
                    "topic {topic:?} takes no address or confirmations"
                )));
            }
            Ok(())
        };
        let topic = match params.topic.as_str() {
            "tips" => {
                only_address("tips")?;
                Topic::Tips
            }
            "peers" => {
                only_address("peers")?;
                Topic::Peers(BTreeMap::new())
            }
            "mempool" => {
                only_address("mempool")?;
                Topic::Mempool(None)
            }
            "address" => {
                let text = params
                    .address
                    .as_deref()
                    .ok_or_else(|| RpcError::invalid_params("topic \"address\" needs address"))?;
                let address = super::methods::parse_address(&self.context, text)?;
                let max_confirmations = params.confirmations.unwrap_or(DEFAULT_CONFIRMATIONS);
                if !(1..=MAX_CONFIRMATIONS).contains(&max_confirmations) {
                    return Err(RpcError::invalid_params(format!(
                        "confirmations: 1 to {MAX_CONFIRMATIONS}"
                    )));
                }
                Topic::Address(AddressWatch {
                    address,
                    pending: HashSet::new(),
                    confirmed: HashMap::new(),
                    max_confirmations,
                })
            }
            "templates" => {
                if params.confirmations.is_some() {
                    return Err(RpcError::invalid_params(
                        "topic \"templates\" takes an address only",
                    ));
                }
                let text = params.address.as_deref().ok_or_else(|| {
                    RpcError::invalid_params("topic \"templates\" needs address (who is paid)")
                })?;
                Topic::Templates(super::methods::parse_address(&self.context, text)?)
            }
            other => {
                return Err(RpcError::invalid_params(format!(
                    "topic: unknown {other:?}; one of tips, address, peers, mempool, templates"
                )))
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        self.subscriptions.insert(id, topic);
        // Peers and mempool say where they stand at once, not a tick later.
        let first = self.on_tick_only(Some(id));
        Ok((id, first))
    }

    fn on_event(&mut self, event: &NodeEvent) -> Vec<String> {
        let mut out = Vec::new();
        let prefix = self.context.node.spec().address_prefix.clone();
        let node = self.context.node.clone();
        let mut tips: Option<Vec<String>> = None;
        for (id, topic) in &mut self.subscriptions {
            match (topic, event) {
                (Topic::Tips, NodeEvent::Tip { .. }) => {
                    // Rendered once per event, whoever subscribed how many times.
                    let rendered = tips.get_or_insert_with(|| render_tips(event, &prefix));
                    out.extend(rendered.iter().map(|result| {
                        format!(
                            r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"subscription":"{id}","topic":"tips","result":{result}}}}}"#
                        )
                    }));
                }
                (Topic::Address(watch), NodeEvent::TxAccepted(tx)) => {
                    out.extend(
                        watch
                            .accepted(tx, &prefix)
                            .map(|result| notification(*id, "address", result)),
                    );
                }
                (
                    Topic::Address(watch),
                    NodeEvent::Tip {
                        connected,
                        disconnected,
                        dropped,
                    },
                ) => {
                    let mut pool = |txid: &TxId| node.lock().mempool.contains(txid);
                    out.extend(
                        watch
                            .follow(connected, disconnected, dropped, &mut pool, &prefix)
                            .into_iter()
                            .map(|result| notification(*id, "address", result)),
                    );
                }
                _ => {}
            }
        }
        out
    }

    fn wants_tick(&self) -> bool {
        self.subscriptions
            .values()
            .any(|t| matches!(t, Topic::Peers(_) | Topic::Mempool(_)))
    }

    fn on_tick(&mut self) -> Vec<String> {
        self.on_tick_only(None)
    }

    /// Peer changes and mempool counts, for every subscription or just `only`.
    fn on_tick_only(&mut self, only: Option<u64>) -> Vec<String> {
        let wants = |topic: &Topic| matches!(topic, Topic::Peers(_) | Topic::Mempool(_));
        if !self
            .subscriptions
            .iter()
            .any(|(id, t)| wants(t) && only.is_none_or(|o| o == *id))
        {
            return Vec::new();
        }
        let peers = self
            .context
            .network
            .as_ref()
            .map(|n| n.peers())
            .unwrap_or_default();
        let mempool = {
            let guard = self.context.node.lock();
            (guard.mempool.len(), guard.mempool.bytes())
        };
        let mut out = Vec::new();
        for (id, topic) in &mut self.subscriptions {
            if only.is_some_and(|o| o != *id) {
                continue;
            }
            match topic {
                Topic::Peers(known) => {
                    let now: BTreeMap<String, crate::p2p::PeerInfo> = peers
                        .iter()
                        .map(|p| (p.peer_id.clone(), p.clone()))
                        .collect();
                    for (peer_id, peer) in &now {
                        if !known.contains_key(peer_id) {
                            out.push(notification(*id, "peers", peer_json(peer, "connected")));
                        }
                    }
                    for (peer_id, peer) in known.iter() {
                        if !now.contains_key(peer_id) {
                            out.push(notification(*id, "peers", peer_json(peer, "disconnected")));
                        }
                    }
                    *known = now;
                }
                Topic::Mempool(last) if *last != Some(mempool) => {
                    *last = Some(mempool);
                    out.push(notification(
                        *id,
                        "mempool",
                        json!({"count": mempool.0, "bytes": mempool.1}),
                    ));
                }
                _ => {}
            }
        }
        out
    }
}

/// Each block a change of tip connected, as a `tips` result (JSON text): the first after a
/// reorganisation says how deep it was and which blocks it undid.
fn render_tips(event: &NodeEvent, prefix: &AddressPrefix) -> Vec<String> {
    let NodeEvent::Tip {
        connected,
        disconnected,
        ..
    } = event
    else {
        return Vec::new();
    };
    connected
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let reorg = (i == 0 && !disconnected.is_empty()).then(|| {
                json!({
                    "depth": disconnected.len(),
                    "disconnected": disconnected
                        .iter()
                        .map(|b| b.hash.to_string())
                        .collect::<Vec<_>>(),
                })
            });
            json!({
                "height": block.height,
                "hash": block.hash.to_string(),
                "timestamp_ms": block.timestamp_ms,
                "tx_count": block.txs.len(),
                "miner": block.miner.to_text(prefix),
                "reorg": reorg,
            })
            .to_string()
        })
        .collect()
}

/// A fresh template paying `miner`, as a `templates` notification (none while the state
/// cannot be read: the next tip tries again).
fn template_notification(
    context: &RpcContext,
    id: u64,
    miner: apiary_core::Address,
) -> Option<String> {
    let node = &context.node;
    let template = match context.templates.build(node, miner) {
        Ok(template) => template,
        Err(error) => {
            tracing::warn!(%error, "no template for a subscriber");
            return None;
        }
    };
    Some(notification(
        id,
        "templates",
        super::mining::template_json(node, &template, false),
    ))
}

fn peer_json(peer: &crate::p2p::PeerInfo, event: &str) -> Value {
    json!({"event": event, "peer_id": peer.peer_id, "addr": peer.addr, "inbound": peer.inbound})
}
