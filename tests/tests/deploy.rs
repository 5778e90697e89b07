//! Apiary beyond one machine's loopback: the container image built without a registry and
//! smoke-tested (`scripts/image`), a compose testnet of three containers that finds its
//! peers by service name and survives a `docker kill`, and the Kubernetes manifests checked
//! offline. Each needs root and Docker (CI has both): without them a test fails and says
//! why, never skips silently. The image is built from the tests' own binaries.

use apiary_system_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The image of this test run's binaries, tagged uniquely, built once for every test here
/// through `scripts/image --prebuilt` (which also runs its smoke test). Its result is the
/// tag, or why the build failed.
fn image() -> &'static Result<String, String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // One tag, replaced by each run: no image piles up from run to run.
        let tag = "apiary-test".to_string();
        let _ = docker(&["rmi", "-f", &tag]);
        let context = tempfile::TempDir::new().unwrap();
        let output = Command::new(repo_root().join("scripts/image"))
            .args(["--prebuilt", "--tag", &tag])
            .env("APIARY_BIN_DIR", bin("apiary-node").parent().unwrap())
            .env("APIARY_IMAGE_CONTEXT", context.path())
            .output()
            .map_err(|e| format!("scripts/image: {e}"))?;
        if output.status.success() {
            Ok(tag)
        } else {
            Err(format!(
                "scripts/image --prebuilt failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    })
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

#[test]
fn the_image_builds_without_a_registry_and_passes_its_smoke_test() {
    let tag = image().as_ref().unwrap();
    let user = succeeded(
        "docker inspect",
        docker(&["image", "inspect", "-f", "{{.Config.User}}", tag]),
    );
    assert_eq!(user.trim(), "apiary");
    // Only the six programs in /usr/local/bin, and no extra CA certificate from the host.
    let listed = succeeded(
        "ls in the image",
        docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "find",
            tag,
            "/usr/local/bin",
            "/usr/local/share",
            "-type",
            "f",
        ]),
    );
    let mut programs: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("/usr/local/bin/"))
        .collect();
    programs.sort();
    assert_eq!(
        programs,
        [
            "apiary-cli",
            "apiary-genesis",
            "apiary-miner",
            "apiary-node",
            "apiary-pool",
            "apiary-wallet"
        ]
    );
    assert!(!listed.contains(".crt"), "{listed}");
}

/// A compose project of its own (name and ports), taken down with its volumes however the
/// test ends.
struct Compose {
    project: String,
    env: Vec<(String, String)>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(repo_root().join("deploy/compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("docker-compose (Debian's docker-compose package)")
    }

    fn cli(&self, node: &str, method: &str) -> Option<Value> {
        self.cli_with(node, method, &[])
    }

    fn cli_with(&self, node: &str, method: &str, params: &[&str]) -> Option<Value> {
        let mut args = vec!["exec", "-T", node, "apiary-cli", "--raw", method];
        args.extend_from_slice(params);
        let output = self.run(&args);
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).ok())
            .flatten()
    }

    fn height(&self, node: &str) -> u64 {
        self.cli(node, "chain_tip")
            .and_then(|tip| tip["height"].as_u64())
            .unwrap_or(0)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "-t", "5"]);
    }
}

/// The body of a GET, or "" when there is none (yet).
fn http_get(url: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1],timeout=5).read().decode())",
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

#[test]
fn a_compose_testnet_converges_survives_a_kill_and_catches_up() {
    let tag = image().as_ref().unwrap();
    let compose = Compose {
        project: format!("apiarytest{}", std::process::id()),
        env: vec![
            ("APIARY_IMAGE".into(), tag.clone()),
            ("APIARY_NODE0_PORT".into(), free_port()),
            ("APIARY_NODE1_PORT".into(), free_port()),
            ("APIARY_NODE2_PORT".into(), free_port()),
            ("APIARY_PROMETHEUS_PORT".into(), free_port()),
        ],
    };
    // Everything the file holds: three nodes and Prometheus (built from Debian's package
    // on the base scripts/image made).
    succeeded("docker-compose up", compose.run(&["up", "-d"]));
    let wait = Duration::from_secs(120);
    // Peers were given by service name only: one chain proves they resolved. Compared at
    // a height all have passed (a `docker-compose exec` takes about a second, longer than
    // a tip may last).
    let nodes = ["node0", "node1", "node2"];
    wait_until(wait, "all three past height 4", || {
        nodes.iter().all(|n| compose.height(n) >= 4)
    });
    wait_until(wait, "one block at height 3 on all three", || {
        let hashes: Vec<Option<Value>> = nodes
            .iter()
            .map(|n| {
                compose
                    .cli_with(n, "block_get", &["height=3"])
                    .map(|b| b["hash"].clone())
            })
            .collect();
        hashes.iter().all(|h| h.is_some() && *h == hashes[0])
    });
    let peers = compose.cli("node1", "net_peers").unwrap();
    assert_eq!(peers.as_array().unwrap().len(), 2, "{peers}");
    // The explorer of node 0 is published on this machine's loopback.
    let port = &compose.env[1].1;
    let tip = http_get(&format!("http://127.0.0.1:{port}/explorer/api/chain_tip"));
    assert!(tip.contains("height"), "{tip}");
    // Prometheus scrapes every node by its service name.
    let port = &compose.env[4].1;
    wait_until(wait, "Prometheus to scrape all three nodes", || {
        let targets = http_get(&format!("http://127.0.0.1:{port}/api/v1/targets"));
        let Ok(targets) = serde_json::from_str::<Value>(&targets) else {
            return false;
        };
        let up: Vec<&str> = targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["instance"].as_str())
            .collect();
        up.len() == 3
    });

    succeeded("docker-compose kill", compose.run(&["kill", "node2"]));
    let killed_at = compose.height("node0");
    wait_until(wait, "node0 to mine on without node2", || {
        compose.height("node0") >= killed_at + 2
    });
    succeeded("docker-compose start", compose.run(&["start", "node2"]));
    wait_until(wait, "node2 to catch up", || {
        let target = compose.height("node0");
        compose.height("node2") >= target
    });
}

#[test]
fn the_kubernetes_manifests_validate_offline() {
    let dir = repo_root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.30.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate (scripts/setup installs it from PyPI)");
    succeeded("kubernetes-validate", output);
    let kinds: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("kind: ").map(String::from))
                .collect::<Vec<_>>()
        })
        .collect();
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}
