//! A reader that goes away (`| head`, a log shipper that dies): a command ends quietly, as
//! other Unix tools do (status 0, or killed by SIGPIPE: 141 in a shell), never with a
//! panic; a node whose log nobody reads any more runs on.

use apiary_system_tests::*;
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

/// Ended as `| head` lets a Unix tool end: all written, or stopped by SIGPIPE.
fn ended_quietly(status: ExitStatus) -> bool {
    status.success() || status.signal() == Some(libc::SIGPIPE)
}

#[test]
fn commands_end_quietly_when_their_reader_is_gone() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let datadir = node.datadir.to_str().unwrap().to_string();
    let commands: [(&str, Vec<&str>); 4] = [
        ("apiary-cli", vec!["--datadir", &datadir, "chain_tip"]),
        ("apiary-cli", vec!["--datadir", &datadir, "help"]),
        ("apiary-genesis", vec!["devnet"]),
        ("apiary-wallet", vec!["--help"]),
    ];
    for (program, args) in commands {
        let output = Command::new(bin(program))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            ended_quietly(output.status),
            "{program} {args:?}: {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.stderr.is_empty(), "{program} {args:?} said nothing");
    }
}

#[test]
fn the_miner_ends_quietly_when_its_reader_is_gone() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    // With --json it writes a line for its first template at once.
    let started = std::time::Instant::now();
    let status = Command::new(bin("apiary-miner"))
        .args(["--rpc", &node.rpc.url, "--rpc-cookie"])
        .arg(node.datadir.join("rpc.cookie"))
        .args(["--address", &address_text(9), "--threads", "1"])
        .args(["--duration", "60", "--json"])
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ended_quietly(status), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "it ended at its first write, not after --duration"
    );
}

#[test]
fn a_node_runs_on_when_its_log_reader_is_gone() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let datadir = dir.path().join("node");
    std::fs::create_dir_all(&datadir).unwrap();
    let mut child = Command::new(bin("apiary-node"))
        .arg("--datadir")
        .arg(&datadir)
        .arg("--genesis")
        .arg(&spec)
        .args([
            "--rpc-addr",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    let cookie = datadir.join("rpc.cookie");
    wait_until(Duration::from_secs(60), "the node to start", || {
        cookie.exists() || child.try_wait().unwrap().is_some()
    });
    assert!(child.try_wait().unwrap().is_none(), "the node ended");
    let rpc = Rpc {
        url: format!(
            "http://{}/",
            std::fs::read_to_string(datadir.join("rpc.addr"))
                .unwrap()
                .trim()
        ),
        credentials: std::fs::read_to_string(&cookie).unwrap(),
    };
    // Every block is logged, to nobody.
    for _ in 0..5 {
        rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    }
    assert_eq!(rpc.tip_height(), 10);
    assert!(child.try_wait().unwrap().is_none(), "the node ended");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
