//! The RPC server under abuse and odd input: idle and slow connections cannot lock users
//! out or exhaust the node's file descriptors, every refusal is a JSON-RPC error, and user
//! numbers that would overflow are refused with the parameter named.

use apiary_system_tests::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tempfile::TempDir;

fn rpc_socket(node: &NodeProcess) -> std::net::SocketAddr {
    node.rpc
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[test]
fn eleven_hundred_idle_connections_do_not_lock_users_out() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    // The node may open 1,024 files, as on many machines by default.
    let node = NodeProcess::start_with_file_limit(&dir.path().join("node"), Some(&spec), &[], 1024)
        .unwrap();
    let addr = rpc_socket(&node);
    let idle: Vec<TcpStream> = (0..1_100)
        .map(|_| TcpStream::connect(addr).expect("the kernel takes the connection"))
        .collect();
    // A user still gets answers while they all stay open (the idlest make way).
    for _ in 0..5 {
        assert_eq!(node.rpc.tip_height(), 0);
    }
    assert!(node.rpc.call("node_info", json!({})).is_ok());
    drop(idle);
}

#[test]
fn a_slow_client_is_cut_off_and_an_over_long_body_gets_a_json_error() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let addr = rpc_socket(&node);

    // Half a request head, then nothing: closed once the head deadline passes.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 256];
    let read = slow.read(&mut buf);
    let cut_off = match read {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&buf[..n]).contains(" 408 "),
        // Still open when the read gave up.
        Err(_) => false,
    };
    assert!(cut_off, "{read:?}");

    // Over 2 MiB of body: 413 with a JSON-RPC error, not plain text.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"chain_tip","params":{{"x":"{}"}}}}"#,
        "a".repeat(3 << 20)
    );
    let refused = node.rpc.raw(&big).unwrap_err();
    assert_eq!(
        (refused.http_status, refused.code),
        (413, -32600),
        "{refused:?}"
    );
    assert!(refused.message.contains("bytes"), "{refused:?}");

    // A client that asks first (curl does, for large bodies) is refused before it sends.
    let mut asking = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        basic(&node.rpc.credentials),
        3 << 20
    );
    asking.write_all(head.as_bytes()).unwrap();
    asking
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    let _ = asking.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(!answer.contains(" 100 Continue"), "{answer}");

    // Wrong method: a JSON-RPC error too (GET / says what the port is instead).
    let response = ureq::put(&node.rpc.url).call();
    let Err(ureq::Error::Status(405, response)) = response else {
        panic!("PUT / is refused with 405");
    };
    let body: serde_json::Value = response.into_json().unwrap();
    assert_eq!(body["error"]["code"], -32600);
}

#[test]
fn ids_are_echoed_exactly_and_bad_params_are_named() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    for id in ["18446744073709551617123", "1.50", "\"a-b\"", "null", "-0"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"chain_tip"}}"#);
        let response = ureq::post(&node.rpc.url)
            .set("Authorization", &basic(&node.rpc.credentials))
            .send_string(&body)
            .unwrap()
            .into_string()
            .unwrap();
        assert!(response.ends_with(&format!(r#""id":{id}}}"#)), "{response}");
    }
    let refused = node
        .rpc
        .call("dev_mine", json!({"blocks": "many"}))
        .unwrap_err();
    assert_eq!(refused.code, -32602);
    assert!(refused.message.contains("blocks"), "{refused:?}");
}

fn basic(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// `net_disconnect` with the longest `ban_seconds` a JSON number holds is refused with
/// the parameter named, and the network goes on following the chain.
#[test]
fn a_huge_ban_is_refused_and_the_network_keeps_following() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let (a, b) = connected_pair(dir.path(), &spec, ["a", "b"]);
    let refused = a
        .rpc
        .call(
            "net_disconnect",
            json!({"peer_id": b.peer_id(), "ban_seconds": u64::MAX}),
        )
        .unwrap_err();
    assert_eq!(refused.code, -32602);
    assert!(refused.message.contains("ban_seconds"), "{refused:?}");
    // The longest allowed ban works, and lifting it heals.
    a.rpc
        .call(
            "net_disconnect",
            json!({"peer_id": b.peer_id(), "ban_seconds": 365 * 24 * 3600}),
        )
        .unwrap();
    wait_until(Duration::from_secs(30), "the ban", || a.peer_count() == 0);
    a.rpc
        .call("net_connect", json!({"addr": b.p2p_addr()}))
        .unwrap();
    b.rpc.call("dev_mine", json!({"blocks": 3})).unwrap();
    let tip = b.tip();
    wait_until(Duration::from_secs(30), "a to follow b's chain", || {
        a.tip() == tip
    });
}

/// 2,000 calls at once, each on a new connection, to a node with default limits (256
/// connections): every one is answered, served or refused as busy (503, `Retry-After`, a
/// JSON-RPC error with the call's id), none closed without a word.
#[test]
fn a_burst_of_two_thousand_calls_is_answered_every_one() {
    const CALLS: usize = 2_000;
    raise_own_file_limit(4 * CALLS as u64);
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let addr = rpc_socket(&node);
    let authorization = basic(&node.rpc.credentials);
    let start = std::sync::Arc::new(std::sync::Barrier::new(CALLS));
    let callers: Vec<_> = (0..CALLS)
        .map(|i| {
            let (start, authorization) = (start.clone(), authorization.clone());
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"chain_tip"}}"#);
                    let request = format!(
                        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    start.wait();
                    let mut stream = TcpStream::connect(addr)?;
                    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
                    stream.write_all(request.as_bytes())?;
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer)?;
                    Ok::<_, std::io::Error>((i, answer))
                })
                .unwrap()
        })
        .collect();
    let (mut served, mut busy) = (0, 0);
    for caller in callers {
        let (i, answer) = caller
            .join()
            .unwrap()
            .expect("the connection was answered, not reset");
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("call {i} got no HTTP answer: {answer:?}"));
        let reply: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("call {i}: {e}: {answer:?}"));
        assert_eq!(reply["id"], i, "{answer}");
        if head.starts_with("HTTP/1.1 200 ") {
            assert_eq!(reply["result"]["height"], 0, "{answer}");
            served += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 503 "), "{answer}");
            assert!(
                head.to_ascii_lowercase().contains("retry-after: 1"),
                "{answer}"
            );
            assert_eq!(
                reply["error"]["code"],
                apiary_api::codes::SERVER_BUSY,
                "{answer}"
            );
            busy += 1;
        }
    }
    assert_eq!(served + busy, CALLS);
    assert!(served >= 256, "{served} served, {busy} refused as busy");
    eprintln!("{served} served, {busy} refused as busy");
}

/// Lets this test process open `files` descriptors (a burst needs one per connection).
fn raise_own_file_limit(files: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = files.min(limit.rlim_max).max(limit.rlim_cur);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// A server whose only slot is busy answers a new call "busy" with its id, within the
/// short wait for a slot, and serves it once the slot is free.
#[test]
fn a_full_server_answers_busy_with_retry_after_and_the_id() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(
        &dir.path().join("node"),
        Some(&spec),
        &["--rpc-max-connections", "1"],
    )
    .unwrap();
    let addr = rpc_socket(&node);
    // A request whose body never finishes keeps the one slot busy.
    let mut hog = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\"",
        basic(&node.rpc.credentials)
    );
    hog.write_all(head.as_bytes()).unwrap();
    // The server takes connections on several threads: a call may still be admitted ahead
    // of the hog's. Once the hog holds the slot, every call meets "busy".
    let mut refusal = None;
    wait_until(Duration::from_secs(30), "the hog to hold the slot", || {
        refusal = node
            .rpc
            .raw(r#"{"jsonrpc":"2.0","id":"mine","method":"chain_tip"}"#)
            .err();
        refusal.is_some()
    });
    let refused = refusal.unwrap();
    assert_eq!(
        (refused.http_status, refused.code),
        (503, apiary_api::codes::SERVER_BUSY),
        "{refused:?}"
    );
    assert!(refused.message.contains("busy"), "{refused:?}");
    let response = ureq::post(&node.rpc.url)
        .set("Authorization", &basic(&node.rpc.credentials))
        .send_string(r#"{"jsonrpc":"2.0","id":"mine","method":"chain_tip"}"#);
    let Err(ureq::Error::Status(503, response)) = response else {
        panic!("503 while the slot is busy: {response:?}");
    };
    assert_eq!(response.header("retry-after"), Some("1"));
    let body: serde_json::Value = response.into_json().unwrap();
    assert_eq!(body["id"], "mine");
    drop(hog);
    wait_until(Duration::from_secs(30), "the slot to come free", || {
        node.rpc.call("chain_tip", json!({})).is_ok()
    });
}

/// Params nested too deep, or a key given twice, are refused as what they are, with the
/// call's id (a client must tell which call failed).
#[test]
fn deep_or_ambiguous_calls_are_refused_with_their_id_and_why() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let call = |body: String| {
        let response = ureq::post(&node.rpc.url)
            .set("Authorization", &basic(&node.rpc.credentials))
            .send_string(&body)
            .unwrap();
        response.into_json::<serde_json::Value>().unwrap()
    };
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"chain_tip","params":{{"a":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let reply = call(deep);
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("128"),
        "{reply}"
    );
    let twice =
        r#"{"jsonrpc":"2.0","id":"eight","method":"dev_mine","params":{"blocks":1,"blocks":100}}"#;
    let reply = call(twice.into());
    assert_eq!(reply["id"], "eight", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key \"blocks\""),
        "{reply}"
    );
    let two_methods = r#"{"jsonrpc":"2.0","id":9,"method":"chain_tip","method":"dev_mine"}"#;
    let reply = call(two_methods.into());
    assert_eq!(reply["id"], 9, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate"),
        "{reply}"
    );
    assert_eq!(node.rpc.tip_height(), 0, "nothing was mined");
}
