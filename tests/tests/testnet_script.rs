//! `scripts/testnet` as the README uses it, on the tests' own binaries (APIARY_BIN_DIR):
//! `up` on a running testnet shows it instead of refusing, and every hint it prints names
//! the testnet's --dir.

use apiary_system_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    repo_root().join("scripts/testnet")
}

fn testnet(dir: &Path, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("APIARY_BIN_DIR", bin("apiary-node").parent().unwrap())
        .output()
        .expect("scripts/testnet runs (python3)")
}

fn succeeded(output: Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Brings the testnet down however the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = testnet(self.0, &["down"]);
    }
}

#[test]
fn up_again_shows_the_testnet_and_hints_name_its_dir() {
    let dir = tempfile::TempDir::new().unwrap();
    let net = dir.path().join("net");
    let _down = Down(&net);
    let shape = ["up", "--nodes", "2", "--miners", "0"];
    succeeded(testnet(&net, &shape));
    let nodes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.join("nodes.json")).unwrap()).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 2);

    // Up again: its status, not a refusal.
    let status = succeeded(testnet(&net, &shape));
    assert!(
        status.contains("height") && status.lines().count() == 3,
        "{status}"
    );
    // Another shape needs `down` first, and says so with the dir.
    let other = testnet(&net, &["up", "--nodes", "3"]);
    assert!(!other.status.success());
    let why = String::from_utf8_lossy(&other.stderr);
    assert!(
        why.contains(&format!("down --dir {}", net.display())),
        "{why}"
    );
    // A stopped node is started again by `up`.
    succeeded(testnet(&net, &["stop", "1"]));
    succeeded(testnet(&net, &shape));
    let status = succeeded(testnet(&net, &["status"]));
    assert!(!status.contains("down"), "{status}");

    let split = succeeded(testnet(&net, &["partition", "0", "1"]));
    assert!(
        split.contains(&format!("heal --dir {}", net.display())),
        "{split}"
    );
    succeeded(testnet(&net, &["heal"]));
    succeeded(testnet(&net, &["down"]));
}

/// `scripts/docs` writes pages for every program a user runs: each answers --manpage and
/// --completions, and the script lists them all.
#[test]
fn every_program_has_a_man_page_and_completions() {
    let script = std::fs::read_to_string(script().with_file_name("docs")).unwrap();
    for program in [
        "apiary-node",
        "apiary-wallet",
        "apiary-cli",
        "apiary-genesis",
        "apiary-miner",
        "apiary-pool",
    ] {
        assert!(
            script.contains(program),
            "scripts/docs leaves out {program}"
        );
        for args in [&["--manpage"][..], &["--completions", "bash"]] {
            let output = run(program, args);
            assert!(output.status.success(), "{program} {args:?}: {output:?}");
            assert!(output.stdout.len() > 200, "{program} {args:?}");
        }
    }
}

fn call(dir: &Path, index: &str, method: &str, params: &str) -> serde_json::Value {
    serde_json::from_str(&succeeded(testnet(dir, &["rpc", index, method, params]))).unwrap()
}

fn height(dir: &Path, index: &str) -> u64 {
    call(dir, index, "chain_tip", "{}")["height"]
        .as_u64()
        .unwrap()
}

fn hash_at(dir: &Path, index: &str, height: u64) -> String {
    let block = call(
        dir,
        index,
        "block_get",
        &format!("{{\"height\": {height}}}"),
    );
    block["hash"].as_str().unwrap().to_string()
}

/// What `ip` and `iptables` list of a testnet's hosts: namespaces, links, forwarding rules.
fn hosts_left(tag_of_namespace: &str) -> Vec<String> {
    let tag = tag_of_namespace
        .trim_start_matches("apn")
        .split('-')
        .next()
        .unwrap();
    let mut left = Vec::new();
    let listings = [
        ("ip", &["netns", "list"][..]),
        ("ip", &["-o", "link", "show"][..]),
        ("iptables", &["-S", "FORWARD"][..]),
    ];
    for (program, args) in listings {
        let Ok(out) = Command::new(program).args(args).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains(&format!("apn{tag}-"))
                || line.contains(&format!("apv{tag}-"))
                || line.contains(&format!("apb{tag}"))
            {
                left.push(line.to_string());
            }
        }
    }
    left
}

/// Three nodes each in a network namespace of its own, links at 10 Mbit/s: they converge,
/// a partition made by dropping packets forks them, healing it joins them on one chain, and
/// `down` leaves no namespace, link or qdisc behind.
#[test]
fn a_hosts_testnet_converges_and_heals_a_real_partition() {
    assert!(
        is_root(),
        "this test needs root (network namespaces, veth, tc); CI runs as root"
    );
    let dir = tempfile::TempDir::new().unwrap();
    let net = dir.path().join("net");
    let _down = Down(&net);
    let shape = [
        "up",
        "--nodes",
        "3",
        "--miners",
        "2",
        "--hosts",
        "--link-rate",
        "10mbit",
    ];
    succeeded(testnet(&net, &shape));
    let launch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.join("launch.json")).unwrap()).unwrap();
    let ns = launch[0]["netns"].as_str().unwrap().to_string();
    let ips: Vec<&str> = (0..3).map(|i| launch[i]["ip"].as_str().unwrap()).collect();
    assert!(ips[0] != ips[1] && !ips[0].starts_with("127."), "{ips:?}");
    let qdisc = Command::new("ip")
        .args(["netns", "exec", &ns, "tc", "qdisc", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&qdisc.stdout).contains("htb"));

    let wait = std::time::Duration::from_secs(90);
    wait_until(wait, "every node past height 2", || {
        ["0", "1", "2"].iter().all(|i| height(&net, i) >= 2)
    });
    succeeded(testnet(&net, &["partition", "0", "1,2"]));
    let split_at = ["0", "1", "2"]
        .iter()
        .map(|i| height(&net, i))
        .max()
        .unwrap();
    // Both sides mine on: a branch each, which no packet carries across.
    wait_until(wait, "both sides four blocks on", || {
        height(&net, "0") >= split_at + 4 && height(&net, "2") >= split_at + 4
    });
    assert_ne!(
        hash_at(&net, "0", split_at + 3),
        hash_at(&net, "2", split_at + 3),
        "the sides exchanged blocks through the partition"
    );
    succeeded(testnet(&net, &["heal"]));
    wait_until(wait, "one chain again", || {
        let tips: Vec<serde_json::Value> = ["0", "1", "2"]
            .iter()
            .map(|i| call(&net, i, "chain_tip", "{}")["hash"].clone())
            .collect();
        tips.iter().all(|t| *t == tips[0]) && height(&net, "0") > split_at + 4
    });
    succeeded(testnet(&net, &["down"]));
    assert_eq!(hosts_left(&ns), Vec::<String>::new());
}
