//! Following a node's WebSocket subscriptions (`/ws`), blocking: `Client::subscribe`
//! connects to the first node that takes the socket, `Subscription::next` waits for the
//! next notification. A node without WebSocket support is an error the caller falls back
//! from (to polling).

use crate::{Client, ClientError};
use serde_json::{json, Value};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub struct Subscription {
    socket: WebSocket<TcpStream>,
    /// Which node: its RPC URL.
    pub url: String,
}

impl Client {
    /// Subscribes to `params` (`{topic, ...}`) on the first node that takes a WebSocket.
    pub fn subscribe(&self, params: Value) -> Result<Subscription, ClientError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let opened = endpoint
                .authorization()
                .and_then(|authorization| open(&endpoint.url, authorization.as_deref(), &params));
            match opened {
                Ok(socket) => {
                    return Ok(Subscription {
                        socket,
                        url: endpoint.url.clone(),
                    })
                }
                Err(why) => failures.push((endpoint.url.clone(), why)),
            }
        }
        Err(ClientError::Unreachable(failures))
    }
}

fn open(
    url: &str,
    authorization: Option<&str>,
    params: &Value,
) -> Result<WebSocket<TcpStream>, String> {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    let address = host
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut request = format!("ws://{host}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(authorization) = authorization {
        request.headers_mut().insert(
            "Authorization",
            authorization.parse().map_err(|_| "bad cookie")?,
        );
    }
    let (mut socket, _) = tungstenite::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e.to_string(),
        tungstenite::HandshakeError::Interrupted(_) => "handshake interrupted".into(),
    })?;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": params});
    socket
        .send(Message::Text(call.to_string().into()))
        .map_err(|e| e.to_string())?;
    loop {
        match socket.read().map_err(|e| e.to_string())? {
            Message::Text(text) => {
                let reply: Value =
                    serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                if reply["id"] == 1 {
                    if let Some(error) = reply.get("error") {
                        return Err(format!("subscribe refused: {}", error["message"]));
                    }
                    return Ok(socket);
                }
            }
            Message::Close(_) => return Err("closed".into()),
            _ => {}
        }
    }
}

impl Subscription {
    /// `next`, read as `T` (an error when the node sends something else).
    pub fn next_as<T: serde::de::DeserializeOwned>(
        &mut self,
        limit: Duration,
    ) -> Result<Option<T>, String> {
        match self.next(limit)? {
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| format!("a notification this program cannot read: {e}")),
            None => Ok(None),
        }
    }

    /// The next notification's result, or None when `limit` passes without one. An error
    /// when the node closed the socket (it stopped, or cut this client off).
    pub fn next(&mut self, limit: Duration) -> Result<Option<Value>, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket
                .get_mut()
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    let message: Value =
                        serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                    match message["method"].as_str() {
                        Some("subscription") => {
                            return Ok(Some(message["params"]["result"].clone()))
                        }
                        Some("subscription_closed") => {
                            return Err(format!(
                                "the node closed the subscription: {}",
                                message["params"]["reason"]
                            ))
                        }
                        _ => {}
                    }
                }
                Ok(Message::Close(_)) => return Err("the node closed the socket".into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}
