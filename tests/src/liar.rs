//! A lying node: `tests/light/proxy.py` in front of a real one, changing one kind of answer
//! (its modes: balance, history, stale, forge), for clients that must not believe it.

use crate::repo_root;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The proxy process, killed when dropped.
pub struct Liar {
    child: Child,
    /// Where it answers (JSON-RPC by POST, the explorer by GET).
    pub url: String,
}

impl Liar {
    /// A proxy in front of `upstream` (a node's RPC URL) that lies as `mode` says.
    pub fn start(mode: &str, upstream: &str) -> Liar {
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/light/proxy.py"))
            .args(["--mode", mode, "--upstream", upstream])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the lying proxy");
        let mut port = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut port)
            .expect("the proxy says its port");
        Liar {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
