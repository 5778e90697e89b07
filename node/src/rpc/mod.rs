//! JSON-RPC 2.0 over HTTP with bitcoind-style cookie auth. This file owns the envelope
//! (auth, parsing, error codes); `methods` owns what each call does.

pub mod catalog;
pub mod explorer;
mod methods;
mod mining;
pub mod probes;
mod proofs;
pub mod server;
mod strict_json;
mod ws;

use crate::node::Node;
use apiary_core::Address;
use apiary_files::write_private_file;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use apiary_api::codes::*;

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
    /// The block templates handed to miners outside the node.
    pub templates: crate::miner::templates::Templates,
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

/// The largest request body taken: a batch of calls, or a transaction in hex, fits easily.
pub const MAX_BODY_BYTES: usize = 2 << 20;
/// A request's body must arrive whole within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(context: Arc<RpcContext>) -> Router {
    Router::new()
        .route("/", post(handle).get(probes::about_rpc))
        .route("/ws", axum::routing::get(ws_private))
        .merge(probes::routes())
        .method_not_allowed_fallback(|| async {
            refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                RpcError::new(
                    INVALID_REQUEST,
                    "JSON-RPC takes POST requests to / with a JSON body; GET / says more",
                ),
            )
        })
        .fallback(|| async {
            refusal(
                StatusCode::NOT_FOUND,
                RpcError::new(INVALID_REQUEST, "no such path: JSON-RPC is served at /"),
            )
        })
        .with_state(context)
}

/// `router` answering browsers of `origin` (`--rpc-cors`): the CORS headers, and
/// preflight requests without a cookie (the call itself still needs one).
pub fn with_cors(router: Router, origin: axum::http::HeaderValue) -> Router {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, Any};
    // A listed origin is echoed only to requests from it; other pages get no header.
    let allowed = if origin == "*" {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list([origin])
    };
    router.layer(
        tower_http::cors::CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::POST, Method::GET])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// The answer when the server has no room for a connection: 503, `Retry-After`, and a
/// JSON-RPC error with the call's id when `body` holds one call whose id can be read.
pub(crate) fn server_busy(body: Option<&[u8]>) -> Response {
    let id = body
        .and_then(|body| serde_json::from_slice::<IdOnly>(body).ok())
        .and_then(|call| call.id)
        .unwrap_or_else(null_id);
    let error = RpcError::new(
        SERVER_BUSY,
        "server busy: too many RPC connections at once; try again in a second (or raise \
         --rpc-max-connections)",
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1"), (header::CONNECTION, "close")],
        axum::Json(error_response(id, error)),
    )
        .into_response()
}

/// A call's id alone, whatever else it holds.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
}

/// An HTTP refusal with a JSON-RPC error body (id null: no call was read).
fn refusal(status: StatusCode, error: RpcError) -> Response {
    (status, axum::Json(error_response(null_id(), error))).into_response()
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

fn null_id() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// A reply to one call, with its id exactly as the caller wrote it.
#[derive(Serialize)]
struct Reply {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    id: Box<RawValue>,
}

fn error_response(id: Box<RawValue>, error: RpcError) -> Reply {
    Reply {
        jsonrpc: "2.0",
        result: None,
        error: Some(json!({"code": error.code, "message": error.message})),
        id,
    }
}

/// One call as sent. The id is kept as raw JSON, so a reply echoes it exactly (a large or
/// fractional number is never rounded); a missing id (a notification) is None.
#[derive(Deserialize)]
struct Call {
    jsonrpc: Option<Value>,
    method: Option<Value>,
    params: Option<strict_json::StrictValue>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
}

/// `Some` for any id that is present, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A body over the limit is still read, up to this, before the 413 goes out: a client
/// that writes its whole request before reading (most do) would otherwise meet a reset
/// connection instead of the answer.
const MAX_DRAINED_BYTES: usize = 4 * MAX_BODY_BYTES;

/// The request's body, whole, within `BODY_TIMEOUT` and `MAX_BODY_BYTES`; or the refusal.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, Response> {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            RpcError::new(
                INVALID_REQUEST,
                format!("request body is over {MAX_BODY_BYTES} bytes; send less per request"),
            ),
        )
    };
    // Refused before a byte is read when the client waits for a go-ahead
    // (`Expect: 100-continue`, as curl does for large bodies: it then sends nothing), or
    // when the body would be too long even to drain.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let waits = headers.contains_key(header::EXPECT);
    let limit = if waits {
        MAX_BODY_BYTES
    } else {
        MAX_DRAINED_BYTES
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut body = body;
        let mut taken = Vec::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                refusal(
                    StatusCode::BAD_REQUEST,
                    RpcError::new(
                        INVALID_REQUEST,
                        format!("cannot read the request body: {error}"),
                    ),
                )
            })?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen <= MAX_BODY_BYTES {
                taken.extend_from_slice(data);
            } else if seen > MAX_DRAINED_BYTES {
                break;
            }
        }
        if seen > MAX_BODY_BYTES {
            return Err(too_large());
        }
        Ok(axum::body::Bytes::from(taken))
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(result) => result,
        Err(_) => Err(refusal(
            StatusCode::REQUEST_TIMEOUT,
            RpcError::new(
                INVALID_REQUEST,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ),
        )),
    }
}

/// `/ws`: every method and subscriptions, with the cookie as for HTTP.
async fn ws_private(
    State(context): State<Arc<RpcContext>>,
    headers: HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    if !authorized(&headers, &context.credentials) {
        return unauthorized();
    }
    ws::upgrade(upgrade, context, ws::Access::Full)
}

fn unauthorized() -> Response {
    let body = error_response(
        null_id(),
        RpcError::new(
            UNAUTHORIZED,
            "unauthorized: use HTTP Basic auth with the contents of <datadir>/rpc.cookie",
        ),
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"apiary\"")],
        axum::Json(body),
    )
        .into_response()
}

async fn handle(
    State(context): State<Arc<RpcContext>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers, &context.credentials) {
        return unauthorized();
    }
    let body = match read_body(&headers, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let calls = match Batch::parse(&body) {
        Ok(calls) => calls,
        Err(e) => {
            return axum::Json(error_response(
                null_id(),
                RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
            ))
            .into_response()
        }
    };
    // Written straight to text: a Value in between would round the ids.
    let reply = tokio::task::spawn_blocking(move || match calls {
        Batch::Many(calls) if calls.is_empty() => Some(serde_json::to_string(&error_response(
            null_id(),
            RpcError::new(INVALID_REQUEST, "invalid request: empty batch"),
        ))),
        Batch::Many(calls) => {
            let replies: Vec<Reply> = calls
                .into_iter()
                .filter_map(|call| answer(&context, &call))
                .collect();
            (!replies.is_empty()).then(|| serde_json::to_string(&replies))
        }
        Batch::One(call) => answer(&context, &call).map(|reply| serde_json::to_string(&reply)),
    })
    .await;
    match reply {
        Ok(Some(Ok(text))) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(Err(e))) => axum::Json(error_response(
            null_id(),
            RpcError::new(INTERNAL_ERROR, format!("internal error: {e}")),
        ))
        .into_response(),
        Err(e) => axum::Json(error_response(
            null_id(),
            RpcError::new(INTERNAL_ERROR, format!("internal error: {e}")),
        ))
        .into_response(),
    }
}

/// A request body: one call or a batch, each kept raw until it is answered on its own
/// (one malformed call in a batch spoils only its own reply).
enum Batch {
    Many(Vec<Box<RawValue>>),
    One(Box<RawValue>),
}

impl Batch {
    fn parse(body: &[u8]) -> Result<Batch, serde_json::Error> {
        let raw: Box<RawValue> = serde_json::from_slice(body)?;
        if raw.get().starts_with('[') {
            Ok(Batch::Many(serde_json::from_str(raw.get())?))
        } else {
            Ok(Batch::One(raw))
        }
    }
}

/// Answers one call; None for a notification (a call without an id).
fn answer(context: &RpcContext, call: &RawValue) -> Option<Reply> {
    answer_with(call, |method, params| {
        catalog::call(context, method, params)
    })
}

/// The answer to a call that does not read as one: what is wrong with it, with its id
/// when the id alone can be read (a client must be able to tell which call failed).
fn unreadable_call(call: &RawValue, error: &serde_json::Error) -> Reply {
    if !call.get().trim_start().starts_with('{') {
        return error_response(
            null_id(),
            RpcError::new(INVALID_REQUEST, "invalid request: expected an object"),
        );
    }
    let id = serde_json::from_str::<IdOnly>(call.get())
        .ok()
        .and_then(|call| call.id)
        .filter(|id| {
            serde_json::from_str::<Value>(id.get())
                .is_ok_and(|id| id.is_string() || id.is_number() || id.is_null())
        })
        .unwrap_or_else(null_id);
    let what = if error.to_string().starts_with("recursion limit exceeded") {
        "nested deeper than 128 levels".to_string()
    } else {
        error.to_string()
    };
    error_response(
        id,
        RpcError::new(INVALID_REQUEST, format!("invalid request: {what}")),
    )
}

/// Checks one call's envelope and answers it with `dispatch(method, params)`.
fn answer_with(
    call: &RawValue,
    dispatch: impl FnOnce(&str, Value) -> Result<Value, RpcError>,
) -> Option<Reply> {
    let call = match serde_json::from_str::<Call>(call.get()) {
        Ok(call) => call,
        Err(error) => return Some(unreadable_call(call, &error)),
    };
    let reply_id = call.id.clone().unwrap_or_else(null_id);
    let valid_id = serde_json::from_str::<Value>(reply_id.get())
        .is_ok_and(|id| id.is_string() || id.is_number() || id.is_null());
    if !valid_id {
        return Some(error_response(
            null_id(),
            RpcError::new(
                INVALID_REQUEST,
                "invalid request: \"id\" must be a string, a number or null",
            ),
        ));
    }
    if call.jsonrpc != Some(Value::from("2.0")) {
        return Some(error_response(
            reply_id,
            RpcError::new(
                INVALID_REQUEST,
                "invalid request: \"jsonrpc\" must be \"2.0\"",
            ),
        ));
    }
    let Some(Value::String(method)) = call.method else {
        return Some(error_response(
            reply_id,
            RpcError::new(
                INVALID_REQUEST,
                "invalid request: \"method\" must be a string",
            ),
        ));
    };
    let params = match call.params.map(|p| p.0) {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(object @ Value::Object(_)) => object,
        Some(_) => {
            return Some(error_response(
                reply_id,
                RpcError::invalid_params("params must be an object of named parameters"),
            ))
        }
    };
    let result = dispatch(&method, params);
    call.id.as_ref()?;
    Some(match result {
        Ok(value) => Reply {
            jsonrpc: "2.0",
            result: Some(value),
            error: None,
            id: reply_id,
        },
        Err(error) => error_response(reply_id, error),
    })
}
