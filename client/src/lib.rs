//! A JSON-RPC client for several nodes: each call goes to the first node that answers, so
//! one node going down does not stop a payment. A node that answers with an error (a
//! rejected tx, say) has answered: its error is the result, not a reason to ask another.
//! Answers are read as the types of `apiary-api` (`Client::ask`), which also read amounts
//! (decimal strings of base units).

mod subscription;

pub use subscription::Subscription;

use base64::Engine;
use serde_json::{json, Value};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no node answered: {}{}", .0.iter().map(|(url, why)| format!("{url}: {why}")).collect::<Vec<_>>().join("; "), unreachable_hint(.0))]
    Unreachable(Vec<(String, String)>),
    #[error("{url} refused {method}: {message} (code {code})")]
    Rpc {
        url: String,
        method: String,
        code: i64,
        message: String,
    },
    #[error("the node's answer to {method} is not what this program reads ({why}): is the node another version?")]
    Unreadable { method: String, why: String },
    #[error("{url}{path}: {answer}")]
    ProbeFailed {
        url: String,
        path: &'static str,
        answer: String,
    },
    #[error("{cookies} RPC cookies for {urls} nodes: give one per --rpc, or one for all")]
    CookieCount { cookies: usize, urls: usize },
}

/// What to do when no node is listening where asked.
fn unreachable_hint(failures: &[(String, String)]) -> &'static str {
    if failures
        .iter()
        .any(|(_, why)| why.contains("Connection refused") || why.starts_with(NO_COOKIE))
    {
        " (is a node running? start one with `apiary-node`, or a testnet with \
         `scripts/testnet up`, or say where it is with --rpc URL)"
    } else {
        ""
    }
}

/// `url` with `http://` in front when it names no scheme (`127.0.0.1:9797`, as curl takes).
pub fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// How a failure to find a node's cookie begins: the node is stopped (a node removes its
/// cookie when it stops cleanly) or not started yet.
const NO_COOKIE: &str = "no RPC cookie";

/// One node: where it answers, and the cookie file that holds its `user:password`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    /// Read at each call, not once: a node writes a new cookie each time it starts and
    /// removes it when it stops, so a missing cookie means "this node is down, ask the
    /// next", never "give up".
    pub cookie: Option<PathBuf>,
}

impl Endpoint {
    /// One endpoint per URL, with the cookie of the same position, or the only cookie for
    /// all of them (as `--rpc URL... --rpc-cookie FILE...` are given).
    pub fn pair(
        urls: &[String],
        cookies: &[std::path::PathBuf],
    ) -> Result<Vec<Endpoint>, ClientError> {
        if cookies.len() > 1 && cookies.len() != urls.len() {
            return Err(ClientError::CookieCount {
                cookies: cookies.len(),
                urls: urls.len(),
            });
        }
        Ok(urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let cookie = cookies
                    .get(i)
                    .or(cookies.first().filter(|_| cookies.len() == 1));
                Endpoint::with_cookie(url, cookie.map(PathBuf::as_path))
            })
            .collect())
    }

    /// An endpoint whose credentials are read from a node's `rpc.cookie` (at each call).
    pub fn with_cookie(url: &str, cookie: Option<&Path>) -> Endpoint {
        Endpoint {
            url: with_scheme(url),
            cookie: cookie.map(Path::to_path_buf),
        }
    }

    /// The `user:password` to send, read from the cookie now. An error says why this node
    /// cannot be asked (and the caller asks the next).
    fn credentials(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.cookie else {
            return Ok(None);
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{NO_COOKIE} at {} (the node is stopped, or not started yet)",
                path.display()
            )),
            Err(e) => Err(format!("cannot read RPC cookie {}: {e}", path.display())),
        }
    }

    /// The HTTP `Authorization` header's value, if this node takes a cookie.
    fn authorization(&self) -> Result<Option<String>, String> {
        Ok(self.credentials()?.map(|credentials| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        }))
    }
}

pub struct Client {
    endpoints: Vec<Endpoint>,
    agent: ureq::Agent,
    /// The endpoint that answered last: asked first next time.
    preferred: Cell<usize>,
}

impl Client {
    pub fn new(endpoints: Vec<Endpoint>) -> Client {
        Client {
            endpoints,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .build(),
            preferred: Cell::new(0),
        }
    }

    /// Calls `M` with typed params and reads its typed result.
    pub fn ask<M: apiary_api::Method>(&self, params: &M::Params) -> Result<M::Result, ClientError> {
        let params = serde_json::to_value(params).map_err(|e| ClientError::Unreadable {
            method: M::NAME.to_string(),
            why: e.to_string(),
        })?;
        let result = self.call(M::NAME, params)?;
        serde_json::from_value(result).map_err(|e| ClientError::Unreadable {
            method: M::NAME.to_string(),
            why: e.to_string(),
        })
    }

    /// `GET path` (`/healthy` or `/ready`, which need no cookie) of the first node that
    /// answers: its text when 200, `ProbeFailed` with its text when it says no (503).
    pub fn probe(&self, path: &'static str) -> Result<String, ClientError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let url = endpoint.url.trim_end_matches('/');
            match self.agent.get(&format!("{url}{path}")).call() {
                Ok(response) => return Ok(response.into_string().unwrap_or_default()),
                Err(ureq::Error::Status(_, response)) => {
                    return Err(ClientError::ProbeFailed {
                        url: url.to_string(),
                        path,
                        answer: response
                            .into_string()
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    })
                }
                Err(e) => failures.push((endpoint.url.clone(), e.to_string())),
            }
        }
        Err(ClientError::Unreachable(failures))
    }

    pub fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut failures = Vec::new();
        let count = self.endpoints.len();
        for offset in 0..count {
            let index = (self.preferred.get() + offset) % count;
            let endpoint = &self.endpoints[index];
            let mut request = self.agent.post(&endpoint.url);
            match endpoint.authorization() {
                Ok(Some(authorization)) => request = request.set("Authorization", &authorization),
                Ok(None) => {}
                Err(why) => {
                    failures.push((endpoint.url.clone(), why));
                    continue;
                }
            }
            let reply: Value = match request.send_json(&body) {
                Ok(response) => match response.into_json() {
                    Ok(reply) => reply,
                    Err(e) => {
                        failures.push((endpoint.url.clone(), format!("unreadable reply: {e}")));
                        continue;
                    }
                },
                Err(ureq::Error::Status(401, _)) => {
                    failures.push((
                        endpoint.url.clone(),
                        "unauthorized: give the node's rpc.cookie with --rpc-cookie".into(),
                    ));
                    continue;
                }
                Err(e) => {
                    failures.push((endpoint.url.clone(), e.to_string()));
                    continue;
                }
            };
            self.preferred.set(index);
            if let Some(error) = reply.get("error") {
                return Err(ClientError::Rpc {
                    url: endpoint.url.clone(),
                    method: method.to_string(),
                    code: error["code"].as_i64().unwrap_or(0),
                    message: error["message"].as_str().unwrap_or("?").to_string(),
                });
            }
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
        Err(ClientError::Unreachable(failures))
    }
}
