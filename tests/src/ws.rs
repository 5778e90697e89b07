//! A WebSocket client of a node's `/ws` or `/explorer/ws`, for tests.

use crate::NodeProcess;
use base64::Engine;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub struct Subscriber {
    pub socket: WebSocket<TcpStream>,
    next_id: u64,
}

impl Subscriber {
    /// Connects to `/ws` with the node's cookie.
    pub fn private(node: &NodeProcess) -> Subscriber {
        Subscriber::connect(node, "/ws", true, None).expect("the node takes the socket")
    }

    /// Connects to the explorer's public socket, without a cookie.
    pub fn public(node: &NodeProcess) -> Subscriber {
        Subscriber::connect(node, "/explorer/ws", false, None).expect("the node takes the socket")
    }

    /// `receive_buffer`: a small socket receive buffer, so a client that never reads
    /// fills it soon.
    pub fn connect(
        node: &NodeProcess,
        path: &str,
        cookie: bool,
        receive_buffer: Option<i32>,
    ) -> Result<Subscriber, tungstenite::Error> {
        let host = node
            .rpc
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = TcpStream::connect(&host).expect("the RPC port is open");
        if let Some(bytes) = receive_buffer {
            use std::os::fd::AsRawFd;
            // SAFETY: setsockopt reads an int of the size given from a live socket.
            unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &bytes as *const i32 as *const libc::c_void,
                    std::mem::size_of::<i32>() as libc::socklen_t,
                );
            }
        }
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut request = format!("ws://{host}{path}").into_client_request()?;
        if cookie {
            let basic = base64::engine::general_purpose::STANDARD.encode(&node.rpc.credentials);
            request
                .headers_mut()
                .insert("Authorization", format!("Basic {basic}").parse().unwrap());
        }
        let (socket, _) = tungstenite::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
            }
        })?;
        Ok(Subscriber { socket, next_id: 0 })
    }

    /// Sends a call and returns its reply (notifications before it are dropped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(call.to_string().into()))
            .unwrap();
        loop {
            let message = self.next_message(Duration::from_secs(30));
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    /// Subscribes and returns the subscription id.
    pub fn subscribe(&mut self, params: Value) -> String {
        let reply = self.call("subscribe", params);
        reply["result"]
            .as_str()
            .unwrap_or_else(|| panic!("subscribe failed: {reply}"))
            .to_string()
    }

    /// The next JSON message, within `limit`.
    pub fn next_message(&mut self, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            assert!(Instant::now() < deadline, "no message within {limit:?}");
            match self.socket.read().expect("the socket stays open") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Close(frame) => panic!("the node closed the socket: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next notification's result on `topic`, within `limit`.
    pub fn next(&mut self, topic: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.next_message(left);
            if message["method"] == "subscription" && message["params"]["topic"] == topic {
                return message["params"]["result"].clone();
            }
        }
    }
}
