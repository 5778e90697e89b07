//! A peer given by name is found again at a new address: nodes in network namespaces of
//! their own (scripts/netns.py), one of them asking a DNS server of the test's (which moves
//! the name) for its peer. Root only: CI runs as root.

use apiary_system_tests::*;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// scripts/netns.py run with `code` after `import netns`.
fn netns(code: &str) -> String {
    let scripts = repo_root().join("scripts");
    let output = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sys; sys.path.insert(0, {:?}); import netns; {code}",
            scripts.display().to_string()
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "netns: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Everything the test made, removed however it ends.
struct Hosts {
    tag: String,
    children: Vec<Child>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        netns(&format!("netns.cleanup({:?})", self.tag));
    }
}

/// A node in host `index`'s namespace; returns its process and RPC.
fn start_node(hosts: &mut Hosts, index: usize, datadir: &Path, spec: &Path, extra: &[&str]) -> Rpc {
    let ip = netns(&format!("print(netns.ip_of({:?}, {index}))", hosts.tag));
    for file in ["rpc.cookie", "rpc.addr"] {
        let _ = std::fs::remove_file(datadir.join(file));
    }
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns(&format!("print(netns.namespace({:?}, {index}))", hosts.tag)),
        ])
        .arg(bin("apiary-node"))
        .arg("--datadir")
        .arg(datadir)
        .arg("--genesis")
        .arg(spec)
        .args(["--rpc-addr", &format!("{ip}:9797")])
        .args(["--listen", &format!("/ip4/{ip}/tcp/9798")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    hosts.children.push(child);
    let cookie = datadir.join("rpc.cookie");
    wait_until(Duration::from_secs(30), "the node to start", || {
        cookie.exists()
    });
    Rpc {
        url: format!(
            "http://{}/",
            std::fs::read_to_string(datadir.join("rpc.addr"))
                .unwrap()
                .trim()
        ),
        credentials: std::fs::read_to_string(cookie).unwrap().trim().to_string(),
    }
}

/// Whether `peer` dialled `rpc`'s node (the node did not dial it).
fn dialled_by(rpc: &Rpc, peer: &str) -> bool {
    rpc.call("net_peers", json!({})).is_ok_and(|peers| {
        peers
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["peer_id"] == peer && p["inbound"] == true)
    })
}

fn peer_id(rpc: &Rpc) -> String {
    rpc.call("node_info", json!({})).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_peer_given_by_name_is_found_again_at_a_new_address() {
    assert!(
        is_root(),
        "this test needs root (network namespaces); CI runs as root"
    );
    let tag = format!("{:04x}", (std::process::id() ^ 0x5a5a) & 0xffff);
    let mut hosts = Hosts {
        tag: tag.clone(),
        children: Vec::new(),
    };
    netns(&format!("netns.create({tag:?}, 3, None)"));
    let ip = |i: usize| netns(&format!("print(netns.ip_of({tag:?}, {i}))"));
    let (first, moved, bridge) = (ip(0), ip(2), {
        let net = ip(0);
        format!("{}.1", net.rsplit_once('.').unwrap().0)
    });

    // The name seed.apiary.test, served by a DNS server of ours on the bridge, asked by
    // node 1 only (its own resolv.conf).
    let dir = tempfile::TempDir::new().unwrap();
    let records = dir.path().join("records.json");
    std::fs::write(&records, json!({"seed.apiary.test": first}).to_string()).unwrap();
    let dns = Command::new("python3")
        .arg(repo_root().join("tests/hosts/dns.py"))
        .arg(format!("{bridge}:53"))
        .arg(&records)
        .spawn()
        .unwrap();
    hosts.children.push(dns);
    netns(&format!("netns.resolver({tag:?}, 1, {bridge:?})"));

    let spec = write_test_spec(dir.path());
    let seed_dir = dir.path().join("seed");
    let seed = start_node(&mut hosts, 0, &seed_dir, &spec, &[]);
    let seed_id = peer_id(&seed);
    let by_name = format!("/dns4/seed.apiary.test/tcp/9798/p2p/{seed_id}");
    let follower = start_node(
        &mut hosts,
        1,
        &dir.path().join("follower"),
        &spec,
        &["--peer", &by_name],
    );
    let follower_id = peer_id(&follower);
    wait_until(
        Duration::from_secs(30),
        "the follower to dial the seed by name",
        || dialled_by(&seed, &follower_id),
    );

    // The seed goes down and comes back on another host (same data dir, same identity);
    // the name moves with it. It dials nobody: only the follower's redial can find it.
    hosts.children[1].kill().unwrap();
    hosts.children[1].wait().unwrap();
    std::fs::write(&records, json!({"seed.apiary.test": moved}).to_string()).unwrap();
    let seed = start_node(&mut hosts, 2, &seed_dir, &spec, &[]);
    assert_eq!(peer_id(&seed), seed_id);
    wait_until(
        Duration::from_secs(60),
        "the follower to dial the seed at its new address",
        || dialled_by(&seed, &follower_id),
    );
}
