//! A JSON-RPC request body, authorised, through the node's real HTTP handler (the axum
//! router every node serves) against a real node: every answer is 200 with JSON-RPC
//! replies (one per call that has an id, each a result or an error with an integer code)
//! or 204 for notifications only; the node stays healthy. `dev_mine` is left out: it
//! mines up to 10,000 blocks a call by design, which would make the run about mining.
#![no_main]

use apiary_node::rpc::{router, RpcContext};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const CREDENTIALS: &str = "__cookie__:fuzz";

struct Rpc {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    auth: String,
}

fn rpc() -> &'static Rpc {
    static RPC: OnceLock<Rpc> = OnceLock::new();
    RPC.get_or_init(|| {
        let context = Arc::new(RpcContext {
            node: apiary_fuzz::shared_node().clone(),
            credentials: CREDENTIALS.into(),
            miner_address: None,
            mine_threads: 1,
            network: None,
            templates: Default::default(),
        });
        Rpc {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            router: router(context),
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(CREDENTIALS)
            ),
        }
    })
}

fn check_reply(reply: &serde_json::Value) {
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    assert!(reply.get("id").is_some(), "{reply}");
    match (reply.get("result"), reply.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            assert!(error["code"].is_i64(), "{reply}");
            assert!(error["message"].is_string(), "{reply}");
        }
        _ => panic!("a reply has a result or an error: {reply}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.windows(8).any(|w| w == b"dev_mine") {
        return;
    }
    let rpc = rpc();
    let request = Request::post("/")
        .header(header::AUTHORIZATION, &rpc.auth)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(data.to_vec()))
        .unwrap();
    let (status, body) = rpc.runtime.block_on(async {
        let response = rpc.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body)
    });
    match status {
        StatusCode::NO_CONTENT => assert!(body.is_empty()),
        StatusCode::OK => {
            let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            match &answer {
                serde_json::Value::Array(replies) => {
                    assert!(!replies.is_empty());
                    replies.iter().for_each(check_reply);
                }
                reply => check_reply(reply),
            }
        }
        other => panic!("status {other}: {}", String::from_utf8_lossy(&body)),
    }
    assert!(
        apiary_fuzz::shared_node().health().fatal_reason().is_none(),
        "the node failed"
    );
});
