//! `apiary-pool` with real nodes and real `apiary-miner` processes: miners are paid in
//! proportion to their shares and the books add up; bad shares and bad lines are refused
//! with the pool up; a pool killed with -9 loses no acknowledged share and pays nothing
//! twice.

use apiary_core::block::{target_words, HeaderHasher};
use apiary_core::pow::Target;
use apiary_core::BlockHeader;
use apiary_system_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(120);

struct PoolProcess {
    child: Child,
    datadir: PathBuf,
    addr: String,
}

impl PoolProcess {
    fn start(datadir: &Path, nodes: &[&NodeProcess], extra: &[&str]) -> PoolProcess {
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

    /// The books as written (empty before the first share).
    fn books(&self) -> Value {
        match std::fs::read(self.datadir.join("pool.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) => json!({"miners": {}, "blocks": [], "payouts": [], "balances": {}}),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PoolProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn miner(pool: &PoolProcess, address: &str, extra: &[&str]) -> Command {
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
fn wait_for_all(miners: Vec<Child>) -> Vec<std::process::Output> {
    miners
        .into_iter()
        .map(|m| std::thread::spawn(move || m.wait_with_output().unwrap()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect()
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn units(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Every found block splits exactly: credits by weight (floored), fee, remainder.
fn assert_books_add_up(books: &Value, fee_percent: u64) {
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
fn mine_until_all_paid(node: &NodeProcess, pool: &PoolProcess) {
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

#[test]
fn three_miners_through_the_pool_are_paid_in_proportion_to_their_shares() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 21);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let pool = PoolProcess::start(
        &dir.path().join("pool"),
        &[&node],
        &[
            "--maturity",
            "2",
            "--fee-percent",
            "2",
            "--share-seconds",
            "0.3",
        ],
    );
    let payees: Vec<String> = (21..24).map(address_text).collect();
    let miners: Vec<Child> = payees
        .iter()
        .map(|a| {
            miner(&pool, a, &["--duration", "12"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = wait_for_all(miners);
    // Every share a miner was told was accepted is in the books.
    let books = pool.books();
    for (payee, output) in payees.iter().zip(&outputs) {
        let summary = lines(&output.stdout)
            .into_iter()
            .find(|l| l["event"] == "summary")
            .unwrap();
        let accepted = summary["accepted"].as_u64().unwrap();
        assert!(accepted > 0, "{summary}");
        // A share answered as the miner stopped may be booked without the miner seeing
        // its answer; none acknowledged is missing.
        let booked = books["miners"][payee]["shares"].as_u64().unwrap();
        assert!(
            (accepted..=accepted + 2).contains(&booked),
            "{payee}: {accepted} acknowledged, {booked} booked"
        );
    }
    let found = books["blocks"].as_array().unwrap().len();
    assert!(found >= 2, "{books}");
    assert_books_add_up(&books, 2);

    // Rewards mature, payouts go out and confirm: each miner holds exactly what it was paid.
    mine_until_all_paid(&node, &pool);
    let books = pool.books();
    assert_books_add_up(&books, 2);
    let mut paid: BTreeMap<String, u64> = BTreeMap::new();
    let mut nonces = Vec::new();
    for payout in books["payouts"].as_array().unwrap() {
        *paid
            .entry(payout["to"].as_str().unwrap().into())
            .or_default() += units(&payout["amount"]);
        nonces.push(units(&payout["nonce"]));
    }
    let mut unique = nonces.clone();
    unique.dedup();
    assert_eq!(unique, nonces, "one payout per nonce");
    let mut credited: BTreeMap<String, u64> = BTreeMap::new();
    for block in books["blocks"].as_array().unwrap() {
        if block["state"] == "credited" {
            for (miner, credit) in block["credits"].as_object().unwrap() {
                *credited.entry(miner.clone()).or_default() += units(credit);
            }
        }
    }
    for payee in &payees {
        let on_chain = node.balance(payee);
        assert_eq!(on_chain, paid.get(payee).copied().unwrap_or(0), "{payee}");
        let fees: u64 = books["payouts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["to"] == payee.as_str())
            .map(|p| units(&p["fee"]))
            .sum();
        assert_eq!(
            on_chain + fees,
            credited.get(payee).copied().unwrap_or(0),
            "{payee}"
        );
    }
}

/// A retarget answered after the books are written re-sends the job current then, not the
/// one current when the share came: a miner never goes back to an older tip's job. (It
/// did: a new tip's job went out during the write, and the old one followed it; the miner
/// hashed a stale tip until the next block.) Blocks every ~0.1 s and a share target of 50 a
/// second make retargets and new tips meet often.
#[test]
fn a_miner_never_gets_an_older_tips_job_after_a_newer_one() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 19);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let pool = PoolProcess::start(
        &dir.path().join("pool"),
        &[&node],
        &["--share-seconds", "0.02"],
    );
    let miners = (31..33)
        .map(|seed| {
            miner(&pool, &address_text(seed), &["--duration", "10"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tips = 0;
    for output in wait_for_all(miners) {
        let heights: Vec<u64> = lines(&output.stdout)
            .iter()
            .filter(|l| l["event"] == "work")
            .map(|l| l["height"].as_u64().unwrap())
            .collect();
        // One node, one pool: the chain only grows, so neither may its jobs' heights.
        for pair in heights.windows(2) {
            assert!(
                pair[1] >= pair[0],
                "a job for height {} after one for {}",
                pair[1],
                pair[0]
            );
        }
        tips = tips.max(heights.last().copied().unwrap_or(0));
    }
    assert!(
        tips >= 10,
        "only {tips} blocks: too few tips to meet a retarget"
    );
}

/// A hand-written Stratum client.
struct Stratum {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_id: u64,
}

impl Stratum {
    fn connect(pool: &PoolProcess) -> Stratum {
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

    fn send_line(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    /// Calls `method`; returns its reply, keeping the jobs that came before it.
    fn call(&mut self, method: &str, params: Value, jobs: &mut Vec<Value>) -> Value {
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

    fn next_job(&mut self) -> Value {
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
fn solve(job: &Value, from: u64) -> (u64, u64) {
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
    (nonce, header.timestamp_ms)
}

/// A nonce that misses `job`'s share target.
fn miss(job: &Value) -> u64 {
    let header: BlockHeader =
        borsh::from_slice(&hex::decode(job[1].as_str().unwrap()).unwrap()).unwrap();
    let target = target_words(&Target::from_hex(job[2].as_str().unwrap()).unwrap());
    let mut hasher = HeaderHasher::new(&header);
    (0..).find(|n| hasher.hash_words(*n) > target).unwrap()
}

#[test]
fn bad_shares_and_bad_lines_are_refused_and_the_pool_stays_up() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 18);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let pool = PoolProcess::start(&dir.path().join("pool"), &[&node], &[]);
    let payee = address_text(21);
    let mut jobs = Vec::new();
    let mut client = Stratum::connect(&pool);
    let subscribed = client.call("mining.subscribe", json!(["test/1"]), &mut jobs);
    assert!(subscribed["result"].is_array(), "{subscribed}");
    // Before authorizing, a share is refused.
    let early = client.call("mining.submit", json!([payee, "x", "1", 1]), &mut jobs);
    assert_eq!(early["error"][0], 24, "{early}");
    let wrong = client.call("mining.authorize", json!(["nonsense", "x"]), &mut jobs);
    assert_eq!(wrong["error"][0], 24, "{wrong}");
    let ok = client.call("mining.authorize", json!([payee, "x"]), &mut jobs);
    assert_eq!(ok["result"], true, "{ok}");
    let job = match jobs.last() {
        Some(job) => job.clone(),
        None => client.next_job(),
    };
    let (nonce, timestamp) = solve(&job, 0);
    let share = json!([payee, job[0], nonce.to_string(), timestamp]);
    assert_eq!(
        client.call("mining.submit", share.clone(), &mut jobs)["result"],
        true
    );
    // The same share again gains nothing.
    let again = client.call("mining.submit", share, &mut jobs);
    assert_eq!(again["error"][0], 22, "{again}");
    let low = client.call(
        "mining.submit",
        json!([payee, job[0], miss(&job).to_string(), timestamp]),
        &mut jobs,
    );
    assert_eq!(low["error"][0], 23, "{low}");
    let unknown = client.call(
        "mining.submit",
        json!([payee, "feedfacefeedface", "1", timestamp]),
        &mut jobs,
    );
    assert_eq!(unknown["error"][0], 21, "{unknown}");
    // Malformed lines and unknown methods: an error each, the connection kept.
    client.send_line("{not json");
    assert_eq!(client.read().unwrap()["error"][0], 20);
    let strange = client.call("mining.frobnicate", json!([]), &mut jobs);
    assert_eq!(strange["error"][0], 20, "{strange}");
    // A share for a job the tip has left behind is stale.
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    let new_job = client.next_job();
    assert_ne!(new_job[0], job[0]);
    let (nonce, timestamp) = solve(&job, 1 << 40);
    let stale = client.call(
        "mining.submit",
        json!([payee, job[0], nonce.to_string(), timestamp]),
        &mut jobs,
    );
    assert_eq!(stale["error"][0], 21, "{stale}");
    assert_eq!(pool.books()["miners"][&payee]["shares"], 1);

    // A 10 MB line: an error, and the connection closed.
    let mut flood = Stratum::connect(&pool);
    let big = "x".repeat(10 << 20);
    let _ = flood.writer.write_all(big.as_bytes());
    let _ = flood.writer.write_all(b"\n");
    let answer = flood.read();
    assert!(
        answer.as_ref().is_none_or(|a| a["error"][0] == 20),
        "{answer:?}"
    );
    assert!(flood.read().is_none(), "closed after the long line");

    // Bad shares beyond the threshold: refused, then disconnected.
    let mut cheat = Stratum::connect(&pool);
    let mut cheat_jobs = Vec::new();
    cheat.call(
        "mining.authorize",
        json!([address_text(22), "x"]),
        &mut cheat_jobs,
    );
    let job = match cheat_jobs.last() {
        Some(job) => job.clone(),
        None => cheat.next_job(),
    };
    let bad = miss(&job).to_string();
    let mut closed = false;
    for _ in 0..30 {
        cheat.next_id += 1;
        let line = json!({"id": cheat.next_id, "method": "mining.submit",
            "params": [address_text(22), job[0], bad, job_timestamp(&job)]});
        cheat.send_line(&line.to_string());
        match cheat.read() {
            Some(reply) if reply["error"][0] == 25 => {
                closed = cheat.read().is_none();
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(closed, "a miner sending only bad shares is disconnected");

    // And the pool still serves.
    let mut later = Stratum::connect(&pool);
    let mut later_jobs = Vec::new();
    let ok = later.call(
        "mining.authorize",
        json!([address_text(23), "x"]),
        &mut later_jobs,
    );
    assert_eq!(ok["result"], true);
}

fn job_timestamp(job: &Value) -> u64 {
    let header: BlockHeader =
        borsh::from_slice(&hex::decode(job[1].as_str().unwrap()).unwrap()).unwrap();
    header.timestamp_ms
}

#[test]
fn a_pool_killed_with_9_loses_no_share_and_pays_nothing_twice() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 21);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let pool_dir = dir.path().join("pool");
    let extra = ["--maturity", "1", "--share-seconds", "0.2"];
    let mut pool = PoolProcess::start(&pool_dir, &[&node], &extra);
    let payee = address_text(21);
    let mut mining = miner(&pool, &payee, &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = mining.stdout.take().unwrap();
    let (sender, acks) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["event"] == "share" && message["reply"]["result"] == true {
                let _ = sender.send(());
            }
        }
    });
    // Shares, blocks and payouts under way; then -9.
    let mut acknowledged = 0u64;
    wait_until(WAIT, "some payouts sent", || {
        acknowledged += acks.try_iter().count() as u64;
        pool.books()["payouts"]
            .as_array()
            .is_some_and(|p| p.len() >= 2)
    });
    pool.kill9();
    acknowledged += acks.try_iter().count() as u64;
    let books = pool.books();
    assert!(
        books["miners"][&payee]["shares"].as_u64().unwrap() >= acknowledged,
        "{acknowledged} acknowledged, {} kept",
        books["miners"][&payee]["shares"]
    );
    let _ = mining.kill();
    let _ = mining.wait();

    // Restarted: it pays the rest, and what was sent once is not sent again.
    let pool = PoolProcess::start(&pool_dir, &[&node], &extra);
    mine_until_all_paid(&node, &pool);
    let books = pool.books();
    assert_books_add_up(&books, 1);
    let payouts = books["payouts"].as_array().unwrap();
    let mut txids: Vec<&str> = payouts
        .iter()
        .map(|p| p["txid"].as_str().unwrap())
        .collect();
    txids.sort();
    txids.dedup();
    assert_eq!(txids.len(), payouts.len());
    let paid: u64 = payouts.iter().map(|p| units(&p["amount"])).sum();
    assert_eq!(node.balance(&payee), paid, "paid once each, no more");
    let credited: u64 = books["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "credited")
        .map(|b| b["credits"][&payee].as_u64().unwrap_or(0))
        .sum();
    let fees: u64 = payouts.iter().map(|p| units(&p["fee"])).sum();
    assert_eq!(paid + fees, credited);
}

#[test]
fn the_pool_fails_over_when_its_node_dies() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 18);
    let mut first = NodeProcess::start(&dir.path().join("first"), Some(&spec), &[]).unwrap();
    let second = NodeProcess::start(
        &dir.path().join("second"),
        Some(&spec),
        &["--peer", &first.p2p_addr()],
    )
    .unwrap();
    wait_until(WAIT, "the nodes to connect", || second.peer_count() == 1);
    let pool = PoolProcess::start(&dir.path().join("pool"), &[&first, &second], &[]);
    let mut mining = miner(&pool, &address_text(21), &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "blocks through the first node", || {
        second.rpc.tip_height() >= 2
    });
    first.kill9();
    let before = second.rpc.tip_height();
    wait_until(WAIT, "blocks through the second node", || {
        second.rpc.tip_height() >= before + 3
    });
    let _ = mining.kill();
    let _ = mining.wait();
    let books = pool.books();
    assert!(books["blocks"].as_array().unwrap().len() as u64 >= before + 3 - 1);
}
