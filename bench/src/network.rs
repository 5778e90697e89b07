//! `propagation` and `gossip`: five nodes in this process on 127.0.0.1.

use super::*;

/// Five nodes in this process, connected over libp2p on 127.0.0.1. Each round, 1,000
/// transfers are gossiped to every mempool first; then node 0 mines a block of them, and the
/// delay is from the block's timestamp (set when it was assembled, a millisecond before its
/// trivial proof of work) until the last of the other four has connected it.
pub(crate) fn bench_propagation() -> Result<Value> {
    propagation(false)
}

/// `propagation` with a lying peer connected to the miner (it claims far more work than
/// exists and answers with nothing), against `propagation` without it in the same run:
/// the liar must not slow blocks down (target: p50 within 2x).
pub(crate) fn bench_propagation_liar() -> Result<Value> {
    let honest = propagation(false)?;
    let lied_to = propagation(true)?;
    let (value, limit) = (
        lied_to["params"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        honest["params"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(json!({
        "value": value,
        "unit": "ms (p50, a liar at the miner)",
        "limit": limit,
        "ratio": round3(value / limit),
        "params": {
            "with_liar": lied_to["params"],
            "honest": honest["params"],
            "limit_is": "propagation p50 of the same run without the liar",
        },
    }))
}

fn propagation(liar: bool) -> Result<Value> {
    let rounds = env_size("BENCH_PROP_BLOCKS", 100)?;
    let txs_per_block = env_size("BENCH_TXS", 1000)?;
    let nodes_count = 5;
    let params = ConnectParams {
        blocks: rounds,
        txs_per_block,
        accounts: txs_per_block,
    };
    let accounts = Accounts::derive(txs_per_block);
    let spec = Arc::new(bench_spec(&accounts.addresses, &params)?);

    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let (nodes, dirs) = start_testnet(&spec, nodes_count)?;
    // The liar is banned within milliseconds of each connection and comes straight back:
    // wait on what it saw, not on the miner's peer list.
    let liar = if liar {
        let addr = std::fs::read_to_string(dirs[0].path().join("p2p.addr"))?;
        let counts = liar::spawn_liar(addr.trim().parse()?, spec.genesis_hash())?;
        wait_for("the liar to connect to the miner", STEP_LIMIT, || {
            counts
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        })?;
        Some(counts)
    } else {
        None
    };

    let miner = accounts.addresses[0];
    // Rounds alternate: the block is mined once its txs have sat in every mempool for
    // MEMPOOL_AGE (as in a network where a tx waits part of a block interval), or the
    // moment the last mempool has them, while gossipsub still relays the duplicates of
    // the burst (the worst case on two shared cores).
    let mut settled_ms = Vec::with_capacity(rounds);
    let mut burst_ms = Vec::with_capacity(rounds);
    for round in 0..2 * rounds {
        let txs: Vec<SignedTransaction> = (0..txs_per_block)
            .into_par_iter()
            .map(|j| accounts.transfer(&spec, j, (j + 1) % txs_per_block, round as u64))
            .collect();
        for (j, stx) in txs.into_iter().enumerate() {
            nodes[j % nodes_count].0.submit_tx(stx)?;
        }
        wait_for("the transfers to reach every mempool", STEP_LIMIT, || {
            nodes
                .iter()
                .all(|(n, _)| n.lock().mempool.len() == txs_per_block)
        })?;
        let settled = round % 2 == 0;
        if settled {
            std::thread::sleep(MEMPOOL_AGE);
        }
        // Mined = the moment the proof of work is found (assembling the template and
        // searching nonces come before); then the miner's own path takes it.
        let mut block = apiary_node::miner::build_template(&nodes[0].0, miner, now_ms())?;
        block.header.nonce =
            search_nonce(&block.header, 0, 1, || false).context("the nonce space ran out")?;
        let hash = block.hash();
        let mined_ms = now_ms();
        if !matches!(nodes[0].0.submit_mined_block(block)?, Accepted::NewTip(_)) {
            bail!("the mined block did not extend the chain");
        }
        let mut seen = vec![None; nodes_count];
        seen[0] = Some(mined_ms);
        wait_for("the block to reach every node", STEP_LIMIT, || {
            for (i, (node, _)) in nodes.iter().enumerate() {
                if seen[i].is_none() && node.lock().chain.is_main(&hash) {
                    seen[i] = Some(now_ms());
                }
            }
            seen.iter().all(Option::is_some)
        })?;
        let last = seen.iter().flatten().max().copied().unwrap_or(mined_ms);
        let delay = last.saturating_sub(mined_ms);
        if settled {
            settled_ms.push(delay);
        } else {
            burst_ms.push(delay);
        }
    }
    for (node, _) in &nodes {
        node.shutdown();
    }
    let percentiles = |delays: &mut Vec<u64>| {
        delays.sort_unstable();
        let at = |p: f64| delays[((delays.len() as f64 - 1.0) * p).round() as usize];
        (at(0.5), at(0.99))
    };
    let (p50, p99) = percentiles(&mut settled_ms);
    let (burst_p50, burst_p99) = percentiles(&mut burst_ms);
    Ok(json!({
        "value": p50,
        "unit": "ms (p50)",
        "limit": null,
        "ratio": null,
        "params": {
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": settled_ms.last(),
            "blocks": rounds,
            "txs_per_block": txs_per_block,
            "nodes": nodes_count,
            "mempool_age_ms": MEMPOOL_AGE.as_millis() as u64,
            "mined_during_tx_burst": {"p50_ms": burst_p50, "p99_ms": burst_p99, "blocks": rounds},
            "relay": "compact blocks (header + txids), rebuilt from each mempool",
            "liar_connections": liar.map(|c| c.connections.load(std::sync::atomic::Ordering::Relaxed)),
            "setup": "5 nodes in one process on 2 cores, libp2p over 127.0.0.1, txs gossiped before each block",
        },
    }))
}

/// How long a block's txs sit in every mempool before it is mined, in `propagation`'s
/// settled rounds.
const MEMPOOL_AGE: std::time::Duration = std::time::Duration::from_millis(500);

/// `count` fresh nodes on loopback, all bootstrapping from the first, once each has a peer.
/// Call inside a tokio runtime; the directories must outlive the nodes.
#[allow(clippy::type_complexity)]
fn start_testnet(
    spec: &Arc<ChainSpec>,
    count: usize,
) -> Result<(Vec<(Arc<Node>, p2p::NetworkHandle)>, Vec<tempfile::TempDir>)> {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut boot: Option<libp2p::Multiaddr> = None;
    // Like real nodes, each logs what it accepts (BENCH_MEMPOOL_LOG=0: without the log).
    let log = env_size("BENCH_MEMPOOL_LOG", 1)? != 0;
    for _ in 0..count {
        let (node, dir) = fresh_node(spec)?;
        if log {
            node.restore_mempool(&dir.path().join("mempool.log"))?;
        }
        let (handle, addr) = start_on_loopback(&node, dir.path(), boot.iter().cloned().collect())?;
        boot.get_or_insert(addr);
        nodes.push((node, handle));
        dirs.push(dir);
    }
    wait_for("every node to have a peer", STEP_LIMIT, || {
        nodes.iter().all(|(_, h)| !h.peers().is_empty())
    })?;
    Ok((nodes, dirs))
}

/// Sustained load: signed transfers submitted at a steady rate, round robin over 5 nodes,
/// while the nodes take turns mining a block a second. Measures the rate at which they
/// are confirmed on every node, and the time from submission to that.
pub(crate) fn bench_gossip() -> Result<Value> {
    let rate = env_size("BENCH_GOSSIP_RATE", 2_000)?;
    let seconds = env_size("BENCH_GOSSIP_SECONDS", 20)?;
    let senders = env_size("BENCH_GOSSIP_SENDERS", 2_000)?;
    let nodes_count = 5;
    let total = rate * seconds;
    let params = ConnectParams {
        blocks: 0,
        txs_per_block: rate * 4,
        accounts: senders,
    };
    let accounts = Accounts::derive(senders);
    let spec = Arc::new(bench_spec(&accounts.addresses, &params)?);
    eprintln!("signing {total} transfers from {senders} senders");
    // Nonce-major order: each sender's transactions are a second or so apart.
    let txs: Vec<SignedTransaction> = (0..total)
        .into_par_iter()
        .map(|i| {
            let (nonce, sender) = (i / senders, i % senders);
            accounts.transfer(&spec, sender, (sender + 1) % senders, nonce as u64)
        })
        .collect();
    let txids: Vec<TxId> = txs.iter().map(SignedTransaction::txid).collect();

    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let (nodes, _dirs) = start_testnet(&spec, nodes_count)?;
    let miner = accounts.addresses[0];
    let node_refs: Vec<&Arc<Node>> = nodes.iter().map(|(n, _)| n).collect();
    let started = Instant::now();
    let cpu_before = super::procs::cpu_seconds(u64::from(std::process::id()))?;
    let copies_before = tx_copies_received();
    let bans_before = bans();
    let submitted_at = std::sync::Mutex::new(vec![None::<Instant>; total]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut confirmed_at: std::collections::HashMap<TxId, (usize, Instant)> =
        std::collections::HashMap::with_capacity(total);
    let mut refused = 0usize;
    std::thread::scope(|scope| -> Result<()> {
        // The submitter: steady rate, each tx to the next node, as wallets would.
        let submitter = scope.spawn(|| {
            let mut refused = 0;
            for (i, stx) in txs.iter().enumerate() {
                let due = started + std::time::Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                submitted_at.lock().unwrap()[i] = Some(Instant::now());
                if node_refs[i % nodes_count].submit_tx(stx.clone()).is_err() {
                    refused += 1;
                }
            }
            refused
        });
        // The miners: one block a second, from each node in turn.
        let mining = scope.spawn(|| -> Result<()> {
            let mut round = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let due = started + std::time::Duration::from_secs(round as u64 + 1);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                apiary_node::miner::mine_block(node_refs[round % nodes_count], miner, 1)?;
                round += 1;
            }
            Ok(())
        });
        // The observer: when each tx is in the main chain of every node. It stops when all
        // are, or when nothing more confirmed for 10 s after the last submission.
        // Blocks are followed by hash, not height: under load, nodes mining in turn fork
        // and reorganise.
        let mut seen_blocks: Vec<std::collections::HashSet<BlockHash>> =
            vec![Default::default(); nodes_count];
        let mut seen_txs: Vec<std::collections::HashSet<TxId>> =
            vec![Default::default(); nodes_count];
        let mut everywhere = 0;
        let mut progressed = Instant::now();
        while everywhere < total
            && !(submitter.is_finished()
                && progressed.elapsed() > std::time::Duration::from_secs(10))
        {
            for (i, node) in node_refs.iter().enumerate() {
                let blocks = {
                    let state = node.lock();
                    let mut blocks = Vec::new();
                    let mut height = state.chain.height().0;
                    while let Some(hash) = state.chain.main_hash(Height(height)) {
                        if height == 0 || !seen_blocks[i].insert(hash) {
                            break;
                        }
                        blocks.push(state.chain.body(&hash)?);
                        height -= 1;
                    }
                    blocks
                };
                let now = Instant::now();
                for txid in blocks.iter().flat_map(Block::txids) {
                    if !seen_txs[i].insert(txid) {
                        continue;
                    }
                    let entry = confirmed_at.entry(txid).or_insert((0, now));
                    entry.0 += 1;
                    entry.1 = now;
                    if entry.0 == nodes_count {
                        everywhere += 1;
                        progressed = now;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        refused = submitter.join().expect("the submitter does not panic");
        mining.join().expect("the miner does not panic")?;
        Ok(())
    })?;
    let cpu_seconds = super::procs::cpu_seconds(u64::from(std::process::id()))? - cpu_before;
    let copies = tx_copies_received();
    let bans = bans() - bans_before;
    let per_tx_per_node = |n: f64| round3(n / (total * nodes_count) as f64);
    for (node, _) in &nodes {
        node.shutdown();
    }
    let submitted_at = submitted_at.into_inner().unwrap();
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(total);
    let mut last_confirmed = started;
    for (txid, submitted) in txids.iter().zip(&submitted_at) {
        let Some(&(seen_by, at)) = confirmed_at.get(txid) else {
            continue;
        };
        if seen_by < nodes_count {
            continue;
        }
        let submitted = submitted.expect("every tx was submitted");
        latencies_ms.push(at.duration_since(submitted).as_secs_f64() * 1_000.0);
        last_confirmed = last_confirmed.max(at);
    }
    let confirmed = latencies_ms.len();
    if confirmed == 0 {
        bail!("no transaction was confirmed on every node");
    }
    latencies_ms.sort_unstable_by(f64::total_cmp);
    let percentile =
        |p: f64| latencies_ms[((latencies_ms.len() as f64 - 1.0) * p).round() as usize];
    let confirmed_per_s = confirmed as f64 / last_confirmed.duration_since(started).as_secs_f64();
    Ok(json!({
        "value": confirmed_per_s.round() as u64,
        "unit": "confirmed tx/s",
        "limit": rate,
        "ratio": round3(confirmed_per_s / rate as f64),
        "params": {
            "offered_tx_per_s": rate,
            "txs": total,
            "senders": senders,
            "refused_at_submission": refused,
            // The whole process while the load ran (the submitter and the observer too).
            "cpu_seconds_per_1000_txs_per_node": round3(cpu_seconds / (total as f64 / 1_000.0) / nodes_count as f64),
            // Gossipsub's own count: every copy of a transaction message each node
            // received, and those beyond the first (a node also learns of transactions
            // from a peer's mempool when they connect, not counted here).
            "copies_received_per_tx_per_node": per_tx_per_node(copies.0 - copies_before.0),
            "duplicates_per_tx_per_node": per_tx_per_node(
                (copies.0 - copies.1) - (copies_before.0 - copies_before.1)
            ),
            // Peers the nodes banned: honest all, so anything but 0 is a fault.
            "bans": bans,
            "not_confirmed": total - confirmed,
            "p50_confirm_ms": percentile(0.5).round(),
            "p99_confirm_ms": percentile(0.99).round(),
            "block_interval_ms": 1_000,
            "nodes": nodes_count,
            "limit_is": "the offered rate",
            "setup": "5 nodes in one process on 2 cores, libp2p over 127.0.0.1; each tx submitted to one node, gossiped to the others; nodes mine in turn, a block a second",
        },
    }))
}

/// Transaction messages gossipsub received so far, over every node of this process: (every
/// copy, first copies only), from its counters on the node's metrics.
fn tx_copies_received() -> (f64, f64) {
    let text = apiary_node::metrics::metrics().text();
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
            .filter(|rest| rest.contains("/txs\"}"))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("apiary_gossipsub_topic_msg_recv_counts_unfiltered_total"),
        sum("apiary_gossipsub_topic_msg_recv_counts_total"),
    )
}

/// Peers banned so far by the nodes of this process (their metrics).
fn bans() -> u64 {
    apiary_node::metrics::metrics()
        .text()
        .lines()
        .find_map(|line| line.strip_prefix("apiary_bans_total ")?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}
