//! JSON-RPC 2.0 over HTTP with bitcoind-style cookie auth. This file owns the envelope
//! (auth, parsing, error codes); `methods` owns what each call does.

mod methods;

use crate::node::Node;
use apiary_core::Address;
use apiary_files::write_private_file;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// A block or transaction named by the call is not known.
pub const NOT_FOUND: i64 = -32004;
/// The transaction was refused; the message says why.
pub const TX_REJECTED: i64 = -32010;
/// `dev_mine` could not finish.
pub const MINING_FAILED: i64 = -32020;

pub const COOKIE_USER: &str = "__cookie__";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl std::fmt::Display) -> RpcError {
        RpcError::new(INVALID_PARAMS, format!("invalid params: {message}"))
    }
}

pub struct RpcContext {
    pub node: Arc<Node>,
    /// `__cookie__:<secret>`, as written to the cookie file.
    pub credentials: String,
    pub miner_address: Option<Address>,
    pub mine_threads: usize,
    pub network: Option<crate::p2p::NetworkHandle>,
}

/// Writes a fresh random cookie to `<datadir>/rpc.cookie` (mode 0600) and returns it.
pub fn write_cookie(datadir: &Path) -> std::io::Result<(PathBuf, String)> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
    let credentials = format!("{COOKIE_USER}:{}", hex::encode(secret));
    let path = datadir.join("rpc.cookie");
    write_private_file(&path, credentials.as_bytes())?;
    Ok((path, credentials))
}

pub fn router(context: Arc<RpcContext>) -> Router {
    Router::new().route("/", post(handle)).with_state(context)
}

fn authorized(headers: &HeaderMap, credentials: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    // Compare every byte, so timing does not reveal how much of the secret matched.
    decoded.len() == credentials.len()
        && decoded
            .iter()
            .zip(credentials.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn error_response(id: Value, error: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": error.code, "message": error.message}, "id": id})
}

async fn handle(
    State(context): State<Arc<RpcContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers, &context.credentials) {
        let body = error_response(
            Value::Null,
            RpcError::new(
                -32001,
                "unauthorized: use HTTP Basic auth with the contents of <datadir>/rpc.cookie",
            ),
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"apiary\"")],
            axum::Json(body),
        )
            .into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return axum::Json(error_response(
                Value::Null,
                RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
            ))
            .into_response()
        }
    };
    let reply = tokio::task::spawn_blocking(move || match request {
        Value::Array(calls) if calls.is_empty() => Some(error_response(
            Value::Null,
            RpcError::new(INVALID_REQUEST, "invalid request: empty batch"),
        )),
        Value::Array(calls) => {
            let replies: Vec<Value> = calls
                .into_iter()
                .filter_map(|call| answer(&context, call))
                .collect();
            (!replies.is_empty()).then_some(Value::Array(replies))
        }
        call => answer(&context, call),
    })
    .await;
    match reply {
        Ok(Some(value)) => axum::Json(value).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => axum::Json(error_response(
            Value::Null,
            RpcError::new(INTERNAL_ERROR, format!("internal error: {e}")),
        ))
        .into_response(),
    }
}

/// Answers one call; None for a notification (a call without an id).
fn answer(context: &RpcContext, call: Value) -> Option<Value> {
    let Value::Object(mut call) = call else {
        return Some(error_response(
            Value::Null,
            RpcError::new(INVALID_REQUEST, "invalid request: expected an object"),
        ));
    };
    let id = call.remove("id");
    let reply_id = id.clone().unwrap_or(Value::Null);
    if call.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Some(error_response(
            reply_id,
            RpcError::new(
                INVALID_REQUEST,
                "invalid request: \"jsonrpc\" must be \"2.0\"",
            ),
        ));
    }
    let Some(Value::String(method)) = call.remove("method") else {
        return Some(error_response(
            reply_id,
            RpcError::new(
                INVALID_REQUEST,
                "invalid request: \"method\" must be a string",
            ),
        ));
    };
    let params = match call.remove("params") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(object @ Value::Object(_)) => object,
        Some(_) => {
            return Some(error_response(
                reply_id,
                RpcError::invalid_params("params must be an object of named parameters"),
            ))
        }
    };
    let result = methods::call(context, &method, params);
    id.as_ref()?;
    Some(match result {
        Ok(value) => json!({"jsonrpc": "2.0", "result": value, "id": reply_id}),
        Err(error) => error_response(reply_id, error),
    })
}
