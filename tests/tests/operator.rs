//! What an operator reaches for: `apiary-cli` against a real node, the probes and the
//! metrics Prometheus scrapes, and the raw bytes an outside program checks blocks with.

use apiary_core::encoding::decode_exact;
use apiary_core::{Block, SignedTransaction};
use apiary_system_tests::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tempfile::TempDir;

fn one_node(dir: &Path, extra: &[&str]) -> NodeProcess {
    let spec = write_test_spec(dir);
    let mut args = vec!["--mine-threads", "1"];
    args.extend_from_slice(extra);
    NodeProcess::start(&dir.join("node"), Some(&spec), &args).unwrap()
}

fn cli(datadir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--datadir", datadir.to_str().unwrap()];
    all.extend_from_slice(args);
    run("apiary-cli", &all)
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "apiary-cli failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("apiary-cli prints JSON")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn cli_calls_methods_with_key_value_and_json_params() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &[]);
    node.rpc
        .call("dev_mine", json!({"blocks": 2, "address": address_text(9)}))
        .unwrap();
    let tip = stdout_json(&cli(&node.datadir, &["chain_tip"]));
    assert_eq!(tip, node.rpc.call("chain_tip", json!({})).unwrap());
    let by_key = stdout_json(&cli(&node.datadir, &["block_get", "height=2"]));
    assert_eq!(by_key["hash"], tip["hash"]);
    let by_json = stdout_json(&cli(&node.datadir, &["block_get", r#"{"height": 1}"#]));
    assert_eq!(by_json["height"], 1);
    // A hash is a string even when it could be read as something else.
    let hash = tip["hash"].as_str().unwrap();
    let by_hash = stdout_json(&cli(&node.datadir, &["block_get", &format!("hash={hash}")]));
    assert_eq!(by_hash["height"], 2);
    // --raw: one line, a string without quotes.
    let raw = cli(
        &node.datadir,
        &["--raw", "block_get", "height=2", "raw=true"],
    );
    let line = String::from_utf8(raw.stdout).unwrap();
    assert_eq!(line.lines().count(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap()["hash"],
        tip["hash"]
    );
    // --rpc and --rpc-cookie name the node instead, the scheme left out.
    let addr = std::fs::read_to_string(node.datadir.join("rpc.addr")).unwrap();
    let cookie = node.datadir.join("rpc.cookie");
    let by_url = run(
        "apiary-cli",
        &[
            "--rpc",
            addr.trim(),
            "--rpc-cookie",
            cookie.to_str().unwrap(),
            "chain_tip",
        ],
    );
    assert_eq!(stdout_json(&by_url), tip);
}

/// `--wait` rides out a node that is not up yet (as bitcoin-cli's -rpcwait), and only that.
#[test]
fn cli_waits_for_a_node_that_is_starting() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    let waiting = std::process::Command::new(bin("apiary-cli"))
        .args([
            "--wait",
            "60",
            "--datadir",
            datadir.to_str().unwrap(),
            "chain_tip",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    let output = waiting.wait_with_output().unwrap();
    assert_eq!(stdout_json(&output)["height"], 0);
    // A refusal is not waited out.
    let started = std::time::Instant::now();
    let refused = cli(&node.datadir, &["--wait", "60", "chain_tipp"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn cli_suggests_the_method_meant() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &[]);
    let output = cli(&node.datadir, &["chain_tipp"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("did you mean \"chain_tip\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn cli_names_a_bad_parameter() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &[]);
    let output = cli(&node.datadir, &["block_get", "height=high"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("height"), "{}", stderr(&output));
    let output = cli(&node.datadir, &["block_get", "height"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "not key=value is a usage error"
    );
}

#[test]
fn cli_with_no_node_running_says_what_to_start() {
    let dir = TempDir::new().unwrap();
    let output = cli(dir.path(), &["chain_tip"]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("apiary-node --datadir"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    // A node that was there and is gone: connection refused, with the same hint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = run("apiary-cli", &["--rpc", &port.to_string(), "chain_tip"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("is a node running?"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn cli_help_is_what_the_node_serves() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &[]);
    let methods = node.rpc.call("rpc_methods", json!({})).unwrap();
    let listing = String::from_utf8(cli(&node.datadir, &["help"]).stdout).unwrap();
    for method in methods.as_array().unwrap() {
        let name = method["name"].as_str().unwrap();
        assert!(listing.contains(name), "help leaves out {name}");
        // Every method listed is served: a call never says "method not found".
        let answer = node.rpc.call(name, json!({"no_such_param": 1}));
        assert!(
            answer.is_err_and(|e| e.code != -32601),
            "{name} is listed but not served"
        );
    }
    let one = String::from_utf8(cli(&node.datadir, &["help", "block_get"]).stdout).unwrap();
    assert!(one.contains("raw (optional)"), "{one}");
    let completions = run("apiary-cli", &["--completions", "bash"]);
    assert!(completions.status.success());
    assert!(String::from_utf8_lossy(&completions.stdout).contains("apiary-cli"));
}

#[test]
fn raw_bytes_hash_to_what_the_node_says() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &[]);
    node.rpc
        .call("dev_mine", json!({"blocks": 1, "address": address_text(1)}))
        .unwrap();
    let stx = transfer(1, address(7), 5, 10_000, 0);
    let txid = node.submit_tx(&stx);
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    let raw = node
        .rpc
        .call("block_get", json!({"height": 2, "raw": true}))
        .unwrap();
    let bytes = hex::decode(raw["hex"].as_str().unwrap()).unwrap();
    let block: Block = decode_exact("block", &bytes, 1 << 24).unwrap();
    assert_eq!(block.hash().to_string(), raw["hash"]);
    assert_eq!(raw["hash"], node.block_hash(2));
    let found = node
        .rpc
        .call("tx_get", json!({"txid": txid, "raw": true}))
        .unwrap();
    let tx: SignedTransaction = decode_exact(
        "tx",
        &hex::decode(found["hex"].as_str().unwrap()).unwrap(),
        256,
    )
    .unwrap();
    assert_eq!(tx.txid().to_string(), txid);
    assert!(tx.verify_signature().is_ok());
    // The JSON form carries everything the bytes do.
    assert_eq!(found["tx"]["signature"], hex::encode(tx.signature));
    assert_eq!(found["tx"]["chain_id"], CHAIN_ID);
    assert_eq!(found["tx"]["amount"], "5", "amounts are decimal strings");
}

#[test]
fn probes_follow_peers() {
    let dir = TempDir::new().unwrap();
    let a = one_node(dir.path(), &[]);
    let base = a.rpc.url.clone();
    assert_eq!(http_get(&base, "/healthy").0, 200);
    let (status, body) = http_get(&base, "/ready");
    assert_eq!((status, body.trim()), (503, "not ready: no peers"));
    let spec = dir.path().join("spec.toml");
    let mut b = NodeProcess::start(
        &dir.path().join("b"),
        Some(&spec),
        &["--peer", &a.p2p_addr()],
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "a ready with a peer", || {
        http_get(&base, "/ready").0 == 200
    });
    b.kill9();
    wait_until(Duration::from_secs(30), "a not ready once alone", || {
        http_get(&base, "/ready").0 == 503
    });
    assert_eq!(http_get(&base, "/healthy").0, 200, "alone is not unhealthy");
    // GET / says what the port is.
    let (status, about) = http_get(&base, "/");
    assert_eq!(status, 200);
    assert!(about.contains("JSON-RPC"), "{about}");
}

#[test]
fn metrics_move_as_blocks_arrive() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let metrics_addr = std::fs::read_to_string(node.datadir.join("metrics.addr")).unwrap();
    let base = format!("http://{}/", metrics_addr.trim());
    let before = metrics::scrape(&base);
    assert_eq!(metrics::sample(&before, "apiary_height", &[]), Some(0.0));
    // Every series a dashboard would plot is there from the start, at 0 (a rejection's
    // reason included, before any block was refused).
    for (name, labels) in [
        (
            "apiary_blocks_rejected_total",
            ("reason", "insufficient_work"),
        ),
        ("apiary_blocks_rejected_total", ("reason", "bad_state_root")),
        (
            "apiary_blocks_rejected_total",
            ("reason", "invalid_ancestor"),
        ),
        ("apiary_blocks_accepted_total", ("outcome", "side_branch")),
    ] {
        assert_eq!(
            metrics::sample(&before, name, &[labels]),
            Some(0.0),
            "{name}{labels:?}"
        );
    }
    node.rpc
        .call("dev_mine", json!({"blocks": 3, "address": address_text(9)}))
        .unwrap();
    let after = metrics::scrape(&base);
    assert_eq!(metrics::sample(&after, "apiary_height", &[]), Some(3.0));
    assert_eq!(
        metrics::sample(
            &after,
            "apiary_blocks_accepted_total",
            &[("outcome", "new_tip")]
        ),
        Some(3.0)
    );
    assert!(metrics::sample(&after, "apiary_store_bytes", &[]).unwrap() > 0.0);
    assert_eq!(
        metrics::sample(&after, "apiary_mempool_transactions", &[]),
        Some(0.0)
    );
    for name in [
        "apiary_tip_age_seconds",
        "apiary_bans_total",
        "apiary_mempool_bytes",
        "apiary_sync_best_known_height",
        "apiary_peers",
    ] {
        assert!(
            after.samples.iter().any(|s| s.metric == name),
            "{name} is missing"
        );
    }
    // The histograms of connect and flush times count what happened.
    let connects = after
        .samples
        .iter()
        .find(|s| s.metric == "apiary_block_connect_seconds")
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or(0.0)
            }
            _ => 0.0,
        });
    assert_eq!(connects, Some(3.0));
    // The probes are served here too, without a cookie.
    assert_eq!(http_get(&base, "/healthy").0, 200);
}

/// The effective config `apiary-node --print-config` reports, parsed.
fn effective_config(args: &[&str]) -> Value {
    let output = run("apiary-node", &[args, &["--print-config"]].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    serde_json::to_value(table).unwrap()
}

#[test]
fn flags_win_over_the_config_file_and_it_over_defaults() {
    let dir = TempDir::new().unwrap();
    let datadir = dir.path().join("node");
    std::fs::create_dir_all(&datadir).unwrap();
    let datadir_text = datadir.to_str().unwrap();
    let defaults = effective_config(&["--datadir", datadir_text]);
    assert_eq!(defaults["max-peers"], 64);
    // What --print-config prints is a config file that gives the same.
    let printed = run(
        "apiary-node",
        &["--datadir", datadir_text, "--print-config"],
    );
    std::fs::write(datadir.join("apiary.toml"), &printed.stdout).unwrap();
    assert_eq!(effective_config(&["--datadir", datadir_text]), defaults);
    // <datadir>/apiary.toml is read when present.
    std::fs::write(datadir.join("apiary.toml"), "max-peers = 7\nmdns = true\n").unwrap();
    let from_file = effective_config(&["--datadir", datadir_text]);
    assert_eq!(
        (from_file["max-peers"].clone(), from_file["mdns"].clone()),
        (json!(7), json!(true))
    );
    let flagged = effective_config(&["--datadir", datadir_text, "--max-peers", "9"]);
    assert_eq!(flagged["max-peers"], 9);
    // A flag may need what the file gives: --mine here, its address there.
    let miner = "apdev1nye7zzkr5ghqjprzet75ccuw06pna4hrlg6mjhnmu4227r6cthmq2k0ee9";
    std::fs::write(
        datadir.join("apiary.toml"),
        format!("max-peers = 7\nmdns = true\nminer-address = {miner:?}\n"),
    )
    .unwrap();
    let mining = effective_config(&["--datadir", datadir_text, "--mine"]);
    assert_eq!(
        (mining["mine"].clone(), mining["miner-address"].clone()),
        (json!(true), json!(miner))
    );
    // --config names another file; a wrong key is refused with the key's name.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "max_peer = 3\n").unwrap();
    let output = run(
        "apiary-node",
        &[
            "--datadir",
            datadir_text,
            "--config",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("did you mean \"max-peers\""), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn a_node_configured_by_file_logs_json_to_its_log_file() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    std::fs::create_dir_all(&datadir).unwrap();
    let log = dir.path().join("apiary.log");
    std::fs::write(
        datadir.join("apiary.toml"),
        format!(
            "log-format = \"json\"\nlog-file = {:?}\n",
            log.to_str().unwrap()
        ),
    )
    .unwrap();
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    node.rpc
        .call("dev_mine", json!({"blocks": 1, "address": address_text(9)}))
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
}

#[test]
fn a_paced_miner_waits_the_interval_between_blocks() {
    let dir = TempDir::new().unwrap();
    let miner = address_text(9);
    let node = one_node(
        dir.path(),
        &[
            "--mine",
            "--miner-address",
            &miner,
            "--mine-interval-ms",
            "300",
        ],
    );
    wait_until(Duration::from_secs(60), "four paced blocks", || {
        node.rpc.tip_height() >= 4
    });
    let times: Vec<u64> = (1..=4)
        .map(|h| {
            node.rpc.call("block_get", json!({"height": h})).unwrap()["timestamp_ms"]
                .as_u64()
                .unwrap()
        })
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 300,
            "blocks {times:?} come faster than the pace"
        );
    }
}

#[test]
fn a_browser_page_of_the_allowed_origin_may_call() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &["--rpc-cors", "http://localhost:3000"]);
    let preflight = ureq::request("OPTIONS", &node.rpc.url)
        .set("Origin", "http://localhost:3000")
        .set("Access-Control-Request-Method", "POST")
        .set(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .call()
        .unwrap();
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    // Another origin gets no permission.
    let other = ureq::request("OPTIONS", &node.rpc.url)
        .set("Origin", "http://evil.example")
        .set("Access-Control-Request-Method", "POST")
        .call();
    let allowed = match other {
        Ok(r) => r.header("access-control-allow-origin").map(str::to_string),
        Err(ureq::Error::Status(_, r)) => {
            r.header("access-control-allow-origin").map(str::to_string)
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(allowed, None);
    // The call itself still needs the cookie.
    assert!(node.rpc.call("chain_tip", json!({})).is_ok());
}

#[test]
fn a_bad_listen_address_gets_an_example() {
    let dir = TempDir::new().unwrap();
    let datadir = dir.path().join("node");
    let output = run(
        "apiary-node",
        &[
            "--datadir",
            datadir.to_str().unwrap(),
            "--listen",
            "0.0.0.0:9798",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("e.g. /ip4/0.0.0.0/tcp/9798"), "{message}");
    assert!(!datadir.exists(), "nothing was created");
}

/// `--probe` is what a container's health check runs: the exit status is the answer.
#[test]
fn cli_probes_health_and_readiness_by_exit_status() {
    let dir = TempDir::new().unwrap();
    let node = one_node(dir.path(), &[]);
    let healthy = cli(&node.datadir, &["--probe", "healthy"]);
    assert_eq!(healthy.status.code(), Some(0), "{}", stderr(&healthy));
    // Alone, the node has no peer: not ready, and says why.
    let ready = cli(&node.datadir, &["--probe", "ready"]);
    assert_eq!(ready.status.code(), Some(1));
    assert!(stderr(&ready).contains("/ready"), "{}", stderr(&ready));
    let both = cli(&node.datadir, &["--probe", "ready", "chain_tip"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "a probe and a method is bad usage"
    );
}
