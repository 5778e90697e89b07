//! `apiary-pool` as a process, its books as the tests read them, and a hand-written
//! Stratum client, for `tests/tests/pool.rs`.

use crate::*;
use apiary_core::block::{target_words, HeaderHasher};
use apiary_core::pow::Target;
use apiary_core::BlockHeader;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(120);

pub struct PoolProcess {
    child: Child,
    pub datadir: PathBuf,
    pub addr: String,
}

impl PoolProcess {
    pub fn start(datadir: &Path, nodes: &[&NodeProcess], extra: &[&str]) -> PoolProcess {
        let _ = std::fs::remove_file(datadir.join("pool.addr"));
        let mut command = Command::new(bin("apiary-pool"));
        for node in nodes {
            command
                .args(["--rpc", &node.rpc.url, "--rpc-cookie"])
                .arg(node.datadir.join("rpc.cookie"));
        }
        let child = command
            .arg("--datadir")
            .arg(datadir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(WAIT, "the pool to listen", || {
            datadir.join("pool.addr").exists()
        });
        let addr = std::fs::read_to_string(datadir.join("pool.addr")).unwrap();
        PoolProcess {
            child,
            datadir: datadir.to_path_buf(),
            addr,
        }
    }

    /// The books as written (empty before the first share), with the settled blocks and
    /// payouts moved to the history put back in front, each once (a crash may repeat one
    /// there; a repeat must be the same entry).
    pub fn books(&self) -> Value {
        let mut books = match std::fs::read(self.datadir.join("pool.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) => json!({"miners": {}, "blocks": [], "payouts": [], "balances": {}}),
        };
        let history =
            std::fs::read_to_string(self.datadir.join("pool-history.jsonl")).unwrap_or_default();
        for (list, key, kind) in [("blocks", "hash", "block"), ("payouts", "txid", "payout")] {
            let mut settled: Vec<Value> = Vec::new();
            for line in history.lines() {
                let entry: Value = serde_json::from_str(line).unwrap();
                let Some(item) = entry.get(kind) else {
                    continue;
                };
                match settled.iter().find(|s| s[key] == item[key]) {
                    Some(seen) => assert_eq!(seen, item, "a repeated history entry differs"),
                    None => settled.push(item.clone()),
                }
            }
            let current = books[list].as_array().cloned().unwrap_or_default();
            settled.retain(|s| !current.iter().any(|c| c[key] == s[key]));
            settled.extend(current);
            books[list] = Value::Array(settled);
        }
        books
    }

    /// How many settled entries the history holds (repeats included).
    pub fn history_lines(&self) -> usize {
        std::fs::read_to_string(self.datadir.join("pool-history.jsonl"))
            .map_or(0, |h| h.lines().count())
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PoolProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn miner(pool: &PoolProcess, address: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(bin("apiary-miner"));
    command
        .args([
            "--pool",
            &pool.addr,
            "--address",
            address,
            "--threads",
            "1",
            "--json",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Each miner's output, drained on a thread of its own: one whose pipe fills stops
/// reading its jobs while another is waited for.
pub fn wait_for_all(miners: Vec<Child>) -> Vec<std::process::Output> {
    miners
        .into_iter()
        .map(|m| std::thread::spawn(move || m.wait_with_output().unwrap()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect()
}

pub fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn units(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Every found block splits exactly: credits by weight (floored), fee, remainder.
pub fn assert_books_add_up(books: &Value, fee_percent: u64) {
    for block in books["blocks"].as_array().unwrap() {
        let reward = units(&block["reward"]);
        let fee = units(&block["fee"]);
        assert_eq!(fee, reward * fee_percent / 100, "{block}");
        let credits: u64 = block["credits"]
            .as_object()
            .unwrap()
            .values()
            .map(units)
            .sum();
        assert_eq!(
            credits + fee + units(&block["remainder"]),
            reward,
            "{block}"
        );
        let weights = block["weights"].as_object().unwrap();
        let total: u64 = weights.values().map(units).sum();
        for (miner, weight) in weights {
            let expected = ((reward - fee) as u128 * units(weight) as u128 / total as u128) as u64;
            assert_eq!(
                block["credits"][miner].as_u64().unwrap_or(0),
                expected,
                "{block}"
            );
        }
    }
}

/// Mines a block at a time (paying someone else) until every block the pool found is
/// matured or void, every payout confirmed and nothing owed.
pub fn mine_until_all_paid(node: &NodeProcess, pool: &PoolProcess) {
    wait_until(WAIT, "every reward paid and confirmed", || {
        node.rpc
            .call(
                "dev_mine",
                json!({"blocks": 1, "address": address_text(30)}),
            )
            .unwrap();
        let books = pool.books();
        let all = |list: &str, done: &dyn Fn(&Value) -> bool| {
            books[list].as_array().unwrap().iter().all(done)
        };
        all("blocks", &|b| b["state"] != "immature")
            && all("payouts", &|p| p["state"] == "confirmed")
            && books["balances"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v == 0)
    });
}

/// A hand-written Stratum client.
pub struct Stratum {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
    pub next_id: u64,
}

impl Stratum {
    pub fn connect(pool: &PoolProcess) -> Stratum {
        let stream = TcpStream::connect(&pool.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Stratum {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 0,
        }
    }

    pub fn send_line(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    pub fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    /// Calls `method`; returns its reply, keeping the jobs that came before it.
    pub fn call(&mut self, method: &str, params: Value, jobs: &mut Vec<Value>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send_line(&json!({"id": id, "method": method, "params": params}).to_string());
        loop {
            let message = self.read().expect("the pool answers");
            if message["method"] == "mining.notify" {
                jobs.push(message["params"].clone());
            } else if message["id"] == id {
                return message;
            }
        }
    }

    pub fn next_job(&mut self) -> Value {
        loop {
            let message = self.read().expect("a job");
            if message["method"] == "mining.notify" {
                return message["params"].clone();
            }
        }
    }
}

/// A nonce meeting `job`'s share target but not its block's (so the tip stays put),
/// searched from `from`.
pub fn solve(job: &Value, from: u64) -> (u64, u64) {
    let header: BlockHeader =
        borsh::from_slice(&hex::decode(job[1].as_str().unwrap()).unwrap()).unwrap();
    let target = target_words(&Target::from_hex(job[2].as_str().unwrap()).unwrap());
    let block = target_words(&header.bits.to_target().unwrap());
    let mut hasher = HeaderHasher::new(&header);
    let nonce = (from..)
        .find(|n| {
            let hash = hasher.hash_words(*n);
            hash <= target && hash > block
        })
        .unwrap();
    (nonce, header.timestamp_ms.0)
}

/// A nonce that misses `job`'s share target.
pub fn miss(job: &Value) -> u64 {
    let header: BlockHeader =
        borsh::from_slice(&hex::decode(job[1].as_str().unwrap()).unwrap()).unwrap();
    let target = target_words(&Target::from_hex(job[2].as_str().unwrap()).unwrap());
    let mut hasher = HeaderHasher::new(&header);
    (0..).find(|n| hasher.hash_words(*n) > target).unwrap()
}

pub fn job_timestamp(job: &Value) -> u64 {
    let header: BlockHeader =
        borsh::from_slice(&hex::decode(job[1].as_str().unwrap()).unwrap()).unwrap();
    header.timestamp_ms.0
}
