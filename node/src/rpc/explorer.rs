//! The block explorer and testnet dashboard, served by the node at `/explorer`: static
//! pages embedded in the binary (plain JavaScript modules, no build step), a read-only
//! API of public chain data without the cookie, and a WebSocket of subscriptions.
//!
//! The API answers any origin (`Access-Control-Allow-Origin: *`, no credentials): the
//! dashboard served by one node reads every other node of a testnet.

use super::{catalog, ws, RpcContext, RpcError, METHOD_NOT_FOUND};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Methods anyone may call here: they read public chain data and change nothing.
pub const PUBLIC_METHODS: &[&str] = &[
    "node_info",
    "chain_tip",
    "block_get",
    "tx_get",
    "account_get",
    "account_history",
    "account_totals",
    "account_proof",
    "headers_get",
    "tx_proof",
    "chain_spec",
    "mempool_info",
    "mempool_txs",
    "fee_estimate",
    "net_peers",
    "block_arrivals",
];

/// A page or script, embedded at build time.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "explorer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../explorer/explorer.js"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../explorer/dashboard.js"),
    },
    Asset {
        name: "proof.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../explorer/proof.js"),
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../explorer/common.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../explorer/style.css"),
    },
];

const EXPLORER_PAGE: &str = include_str!("../../explorer/explorer.html");
const DASHBOARD_PAGE: &str = include_str!("../../explorer/dashboard.html");

pub fn routes(context: Arc<RpcContext>) -> Router {
    Router::new()
        .route("/explorer", get(|| async { page(EXPLORER_PAGE) }))
        .route("/explorer/", get(|| async { page(EXPLORER_PAGE) }))
        .route(
            "/explorer/dashboard",
            get(|| async { page(DASHBOARD_PAGE) }),
        )
        .route("/explorer/assets/{name}", get(asset))
        .route("/explorer/api/{method}", get(api))
        .route("/explorer/ws", get(public_ws))
        // Pages by path (/explorer/block/3, /explorer/tx/<id>, ...): the same page, which
        // reads the path; so every page has a link of its own.
        .route(
            "/explorer/{page}/{*id}",
            get(|Path((page, _)): Path<(String, String)>| async move { explorer_page(&page) }),
        )
        .route(
            "/explorer/{page}",
            get(|Path(page): Path<String>| async move { explorer_page(&page) }),
        )
        .with_state(context)
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// The explorer's page for a path it routes; anything else is not found.
fn explorer_page(page: &str) -> Response {
    const PAGES: [&str; 5] = ["block", "tx", "address", "mempool", "peers"];
    if PAGES.contains(&page) {
        self::page(EXPLORER_PAGE)
    } else {
        (StatusCode::NOT_FOUND, "no such page\n").into_response()
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

async fn public_ws(
    State(context): State<Arc<RpcContext>>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    ws::upgrade(upgrade, context, ws::Access::Public)
}

/// `GET /explorer/api/<method>?name=value&...`: the method's result as JSON, or
/// `{"error": {code, message}}` with a 4xx/5xx status.
async fn api(
    State(context): State<Arc<RpcContext>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let answer = if PUBLIC_METHODS.contains(&method.as_str()) {
        let params = query_params(query.as_deref().unwrap_or(""));
        tokio::task::spawn_blocking(move || catalog::call(&context, &method, params))
            .await
            .unwrap_or_else(|e| Err(RpcError::new(super::INTERNAL_ERROR, e.to_string())))
    } else {
        Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!(
                "{method:?} is not public; these are: {}",
                PUBLIC_METHODS.join(", ")
            ),
        ))
    };
    let (status, body) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err(error) => (
            match error.code {
                METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
                super::NOT_FOUND => StatusCode::NOT_FOUND,
                super::INVALID_PARAMS => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            json!({"error": {"code": error.code, "message": error.message}}),
        ),
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// `a=1&b=x` as named params: a whole number up to 2^53 (all JavaScript can say) is a
/// number, true and false are booleans, the rest strings.
fn query_params(query: &str) -> Value {
    let mut params = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        let value = match value.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            digits
                if !digits.is_empty()
                    && digits.len() <= 16
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                digits
                    .parse::<u64>()
                    .map_or(Value::String(value.clone()), Value::from)
            }
            _ => Value::String(value),
        };
        params.insert(name, value);
    }
    Value::Object(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_take_their_json_types() {
        let params =
            query_params("height=12&raw=true&hash=00ab&address=my1%2Bq&big=12345678901234567");
        assert_eq!(params["height"], json!(12));
        assert_eq!(params["raw"], json!(true));
        assert_eq!(params["hash"], json!("00ab"));
        assert_eq!(params["address"], json!("my1+q"));
        assert_eq!(params["big"], json!("12345678901234567"));
    }

    #[test]
    fn a_broken_escape_stays_as_written() {
        assert_eq!(query_params("x=a%2")["x"], "a%2");
        assert_eq!(query_params("x=a%zz")["x"], "a%zz");
        assert_eq!(query_params("x=%41")["x"], "A");
    }

    #[test]
    fn public_methods_exist_and_change_nothing() {
        for name in PUBLIC_METHODS {
            assert!(catalog::find(name).is_some(), "{name}");
        }
        for private in ["tx_submit", "dev_mine", "net_connect", "net_disconnect"] {
            assert!(!PUBLIC_METHODS.contains(&private));
        }
    }
}
