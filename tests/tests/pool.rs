//! `apiary-pool` with real nodes and real `apiary-miner` processes: miners are paid in
//! proportion to their shares and the books add up; bad shares and bad lines are refused
//! with the pool up; a pool killed with -9 loses no acknowledged share and pays nothing
//! twice.

use apiary_system_tests::pool::*;
use apiary_system_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

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
            // All but the newest settled block and payout move to the history: what is
            // checked below reads both.
            "--keep-settled",
            "1",
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
    assert!(
        pool.history_lines() > 0,
        "settled blocks moved to the history"
    );
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
/// hashed a stale tip until the next block.) Blocks every few tens of ms and 50 shares a
/// second make retargets and new tips meet often.
#[test]
fn a_miner_never_gets_an_older_tips_job_after_a_newer_one() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 17);
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

#[test]
fn a_pool_killed_with_9_loses_no_share_and_pays_nothing_twice() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 21);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let pool_dir = dir.path().join("pool");
    let extra = [
        "--maturity",
        "1",
        "--share-seconds",
        "0.2",
        "--keep-settled",
        "0",
    ];
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
    assert!(
        pool.history_lines() > 0,
        "settled entries moved to the history"
    );
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
    let (mut first, second) = connected_pair(dir.path(), &spec, ["first", "second"]);
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

/// A node stopped cleanly has no cookie: it is down, not a reason for the pool to give up.
#[test]
fn the_pool_starts_and_pays_while_its_first_node_is_stopped() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 18);
    let (mut first, second) = connected_pair(dir.path(), &spec, ["first", "second"]);
    assert!(first.stop(), "a clean stop");
    let pool = PoolProcess::start(&dir.path().join("pool"), &[&first, &second], &[]);
    let mut mining = miner(&pool, &address_text(21), &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "blocks through the second node", || {
        second.rpc.tip_height() >= 3
    });
    let _ = mining.kill();
    let _ = mining.wait();
    assert!(!pool.books()["blocks"].as_array().unwrap().is_empty());
}

/// What `apiary-miner` is given for the pool is checked before any hashing: an http URL
/// (the pool speaks Stratum over TCP), an address that is not one, and an address of
/// another chain (the pool refuses it: the miner ends, instead of asking forever).
#[test]
fn the_miner_refuses_a_pool_url_and_a_wrong_address_at_start() {
    let dir = TempDir::new().unwrap();
    let spec = write_fixed_spec(dir.path(), 1 << 18);
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    let pool = PoolProcess::start(&dir.path().join("pool"), &[&node], &[]);
    let run = |pool_arg: &str, address: &str| {
        Command::new(bin("apiary-miner"))
            .args(["--pool", pool_arg, "--address", address, "--threads", "1"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let payee = address_text(21);
    let http = run(&format!("http://{}", pool.addr), &payee);
    assert_eq!(http.status.code(), Some(2), "{http:?}");
    assert!(
        String::from_utf8_lossy(&http.stderr).contains("HOST:PORT"),
        "{http:?}"
    );
    let nonsense = run(&pool.addr, "nonsense");
    assert_eq!(nonsense.status.code(), Some(2), "{nonsense:?}");
    let other_chain = address(21).to_text(&apiary_core::AddressPrefix::new("apdev").unwrap());
    let refused = run(&pool.addr, &other_chain);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused"),
        "{refused:?}"
    );
    // The stratum+tcp:// form is the same pool.
    let mut mining = Command::new(bin("apiary-miner"))
        .args(["--pool", &format!("stratum+tcp://{}", pool.addr)])
        .args(["--address", &payee, "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "a block through the pool", || {
        node.rpc.tip_height() >= 1
    });
    let _ = mining.kill();
    let _ = mining.wait();
}
