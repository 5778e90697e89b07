//! `scripts/testnet` as the README uses it, on the tests' own binaries (APIARY_BIN_DIR):
//! `up` on a running testnet shows it instead of refusing, and every hint it prints names
//! the testnet's --dir.

use apiary_system_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/testnet")
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
