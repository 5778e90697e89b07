//! A JSON-RPC client for several nodes: each call goes to the first node that answers, so
//! one node going down does not stop a payment. A node that answers with an error (a
//! rejected tx, say) has answered: its error is the result, not a reason to ask another.
//! Amounts come as decimal strings of base units (`amount_of` reads them).

mod subscription;

pub use subscription::Subscription;

use base64::Engine;
use serde_json::{json, Value};
use std::cell::Cell;
use std::path::Path;
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
    #[error("{cookies} RPC cookies for {urls} nodes: give one per --rpc, or one for all")]
    CookieCount { cookies: usize, urls: usize },
    #[error("cannot read RPC cookie {path}: {source}")]
    Cookie {
        path: String,
        source: std::io::Error,
    },
}

/// An amount as the node gives it: a decimal string of base units (a number from nodes
/// before amounts were strings). None when it is neither.
pub fn amount_of(value: &Value) -> Option<apiary_core::Amount> {
    let units = match value {
        Value::String(text) => text.parse().ok()?,
        other => other.as_u64()?,
    };
    Some(apiary_core::Amount::from_base_units(units))
}

/// What to do when no node is listening where asked.
fn unreachable_hint(failures: &[(String, String)]) -> &'static str {
    if failures
        .iter()
        .any(|(_, why)| why.contains("Connection refused"))
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

/// One node: where it answers, and the `user:password` its cookie file holds.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub credentials: Option<String>,
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
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                let cookie = cookies
                    .get(i)
                    .or(cookies.first().filter(|_| cookies.len() == 1));
                Endpoint::with_cookie(url, cookie.map(std::path::PathBuf::as_path))
            })
            .collect()
    }

    /// An endpoint whose credentials are read from a node's `rpc.cookie`.
    pub fn with_cookie(url: &str, cookie: Option<&Path>) -> Result<Endpoint, ClientError> {
        let credentials = cookie
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|text| text.trim().to_string())
                    .map_err(|source| ClientError::Cookie {
                        path: path.display().to_string(),
                        source,
                    })
            })
            .transpose()?;
        Ok(Endpoint {
            url: with_scheme(url),
            credentials,
        })
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

    pub fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut failures = Vec::new();
        let count = self.endpoints.len();
        for offset in 0..count {
            let index = (self.preferred.get() + offset) % count;
            let endpoint = &self.endpoints[index];
            let mut request = self.agent.post(&endpoint.url);
            if let Some(credentials) = &endpoint.credentials {
                let token = base64::engine::general_purpose::STANDARD.encode(credentials);
                request = request.set("Authorization", &format!("Basic {token}"));
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
