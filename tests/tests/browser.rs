//! The explorer and the testnet dashboard in a real headless Chromium against real nodes.
//! Each test saves screenshots under target/tmp/screenshots/<test>/.

use apiary_system_tests::browser::Browser;
use apiary_system_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);

fn browser(test: &str) -> Browser {
    Browser::start(shots(test))
}

fn shots(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(test)
}

fn explorer(node: &NodeProcess, route: &str) -> String {
    format!("{}explorer{route}", node.rpc.url)
}

#[test]
fn the_explorer_shows_each_new_tip_within_2_seconds() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    node.rpc.call("dev_mine", json!({"blocks": 3})).unwrap();
    let browser = browser("explorer_tip");
    browser.goto(&explorer(&node, ""));
    browser.wait_text("#tip-height", WAIT, |t| t == "3");
    browser.wait_text("#live", WAIT, |t| t.contains("live"));
    for _ in 0..3 {
        node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
        let height = node.rpc.tip_height().to_string();
        browser.wait_text("#tip-height", Duration::from_secs(2), |t| t == height);
        // The newest row of the table is the new tip.
        browser.wait_text("#blocks tbody tr td", Duration::from_secs(2), |t| {
            t == height
        });
    }
    assert_eq!(browser.count("#blocks tbody tr"), 7);
    browser.screenshot("home");
}

#[test]
fn searching_a_txid_opens_its_page_and_it_turns_confirmed_without_a_reload() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    // Paid through the wallet, as a user would: 1.5 coins.
    let wallet = |args: &[&str]| -> serde_json::Value {
        let output = std::process::Command::new(bin("apiary-wallet"))
            .arg("--wallet-dir")
            .arg(dir.path().join("wallet"))
            .args(["--json", "--rpc", &node.rpc.url, "--rpc-cookie"])
            .arg(node.datadir.join("rpc.cookie"))
            .args(args)
            .env("APIARY_WALLET_PASSWORD", "a password for the test")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let payer = wallet(&["new"])["address"].as_str().unwrap().to_string();
    node.rpc
        .call("dev_mine", json!({"blocks": 1, "address": payer}))
        .unwrap();
    let paid = wallet(&["send", &address_text(30), "1.5", "--fee", "0.0001"]);
    let txid = paid["txid"].as_str().unwrap().to_string();
    let browser = browser("explorer_tx");
    browser.goto(&explorer(&node, ""));
    browser.wait_text("#tip-height", WAIT, |t| t == "1");
    browser.type_into("#search-input", &txid);
    browser.click("#search button");
    browser.wait_text("#tx-amount", WAIT, |t| t == "1.5 coins");
    assert_eq!(browser.text("#tx-id").as_deref(), Some(txid.as_str()));
    assert_eq!(browser.text("#tx-fee").as_deref(), Some("0.0001 coins"));
    browser.wait_text("#tx-status", WAIT, |t| t == "pending");
    browser.screenshot("pending");
    let marker = browser.eval("window.__kept = 1; return 1;");
    assert_eq!(marker, json!(1));

    node.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    browser.wait_text("#tx-status", WAIT, |t| t == "confirmed");
    browser.wait_text("#tx-confirmations", WAIT, |t| t == "2");
    // The same page, not a reload.
    assert_eq!(browser.eval("return window.__kept;"), json!(1));
    browser.screenshot("confirmed");

    // A height and an address work in the search box too; nonsense says why.
    browser.type_into("#search-input", "2");
    browser.click("#search button");
    browser.wait_text("#block-height", WAIT, |t| t == "2");
    browser.type_into("#search-input", "not-a-thing");
    browser.click("#search button");
    browser.wait_text("#error", WAIT, |t| t.contains("is not a height"));
    // 64 zeros are a hash nobody has, not height 0.
    browser.type_into("#search-input", &"0".repeat(64));
    browser.click("#search button");
    browser.wait_text("#error", WAIT, |t| t.contains("no block or transaction"));
    assert_eq!(browser.count("#block-height"), 0, "no block page opened");
}

#[test]
fn an_address_page_pages_through_its_history() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    // 60 payments to one address over 4 blocks (16 may wait per sender): pages of 25.
    for nonce in 0..60u64 {
        node.submit_tx(&transfer(1, address(30), 1_000 + nonce, 10_000, nonce));
        if nonce % 15 == 14 {
            node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
        }
    }
    assert_eq!(node.mempool_count(), 0);
    let browser = browser("explorer_address");
    browser.goto(&explorer(&node, &format!("#/address/{}", address_text(30))));
    browser.wait_text("#balance", WAIT, |t| t == "0.0006177 coins");
    browser.wait_text("#page-number", WAIT, |t| t == "page 1");
    assert_eq!(browser.count("#history tbody tr"), 25);
    // Newest first: the last payment (1,059 base units) heads the first page.
    let first = browser.text("#history tbody tr td:last-child").unwrap();
    assert_eq!(first, "0.00001059");
    browser.screenshot("page1");
    browser.click("#next-page");
    browser.wait_text("#page-number", WAIT, |t| t == "page 2");
    assert_eq!(browser.count("#history tbody tr"), 25);
    browser.click("#next-page");
    browser.wait_text("#page-number", WAIT, |t| t == "page 3");
    assert_eq!(browser.count("#history tbody tr"), 10);
    assert_eq!(
        browser.attributes("#next-page", "disabled"),
        vec![Some("true".to_string())]
    );
    browser.screenshot("page3");
    browser.click("#prev-page");
    browser.wait_text("#page-number", WAIT, |t| t == "page 2");
}

#[test]
fn an_address_page_proves_its_balance_in_the_browser_and_shows_a_lie_as_failed() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    node.submit_tx(&transfer(1, address(31), 123_456, 10_000, 0));
    node.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    let page = format!("/address/{}", address_text(31));
    let browser = browser("explorer_proof");

    browser.goto(&explorer(&node, &page));
    browser.wait_text("#balance", WAIT, |t| t == "0.00123456 coins");
    let proved = browser.wait_text("#proof", WAIT, |t| t != "checking…");
    assert_eq!(proved, "verified against block 2");
    browser.screenshot("verified");
    // An address nobody paid is proved absent.
    browser.goto(&explorer(&node, &format!("/address/{}", address_text(32))));
    browser.wait_text("#balance", WAIT, |t| t == "0 coins");
    let absent = browser.wait_text("#proof", WAIT, |t| t != "checking…");
    assert_eq!(absent, "verified against block 2");

    // The same page through a node that adds one base unit to every balance it shows.
    let liar = apiary_system_tests::liar::Liar::start("balance", &node.rpc.url);
    browser.goto(&format!("{}/explorer{page}", liar.url));
    browser.wait_text("#balance", WAIT, |t| t == "0.00123457 coins");
    let failed = browser.wait_text("#proof", WAIT, |t| t != "checking…");
    assert!(failed.starts_with("failed:"), "{failed}");
    browser.screenshot("failed");
}

/// The rows' `data-*` attribute `name`, one per node in order.
fn per_node(browser: &Browser, name: &str) -> Vec<String> {
    browser
        .attributes("#nodes tbody tr", name)
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

fn wait_per_node(browser: &Browser, name: &str, what: &str, check: impl Fn(&[String]) -> bool) {
    wait_until(WAIT, what, || check(&per_node(browser, name)));
}

#[test]
fn the_dashboard_shows_a_killed_node_down_and_a_partition_as_two_branches() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let one = NodeProcess::start(&dir.path().join("one"), Some(&spec), &[]).unwrap();
    let peer = ["--peer", &one.p2p_addr()];
    let two = NodeProcess::start(&dir.path().join("two"), Some(&spec), &peer).unwrap();
    let mut three = NodeProcess::start(&dir.path().join("three"), Some(&spec), &peer).unwrap();
    wait_until(WAIT, "node one to have two peers", || one.peer_count() == 2);
    one.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();

    let urls: Vec<String> = [&one, &two, &three]
        .iter()
        .map(|n| format!("node={}", n.rpc.url.trim_end_matches('/')))
        .collect();
    let browser = browser("dashboard");
    browser.goto(&format!(
        "{}explorer/dashboard?{}",
        one.rpc.url,
        urls.join("&")
    ));
    wait_per_node(&browser, "data-state", "three nodes up", |s| {
        s == ["up", "up", "up"]
    });
    wait_until(WAIT, "every node at height 2", || {
        browser
            .text("#summary")
            .is_some_and(|t| t.contains("one branch"))
            && (1..=3).all(|i| {
                browser.text(&format!("#nodes tbody tr:nth-child({i}) td:nth-child(3)"))
                    == Some("2".into())
            })
    });
    browser.screenshot("all_up");

    // Killed: down within a couple of seconds; started again (where the dashboard looks
    // for it): up.
    three.kill9();
    wait_per_node(&browser, "data-state", "node three down", |s| {
        s == ["up", "up", "down"]
    });
    // Down, in words a person reads (not the browser's "Failed to fetch").
    let why = browser
        .text("#nodes tbody tr:nth-child(3) td:nth-child(4)")
        .unwrap();
    assert!(
        why == "not reachable" || why.starts_with("no answer"),
        "{why}"
    );
    browser.screenshot("one_down");
    let three_rpc = three
        .rpc
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    drop(three);
    let three = NodeProcess::start(
        &dir.path().join("three"),
        Some(&spec),
        &["--peer", &one.p2p_addr(), "--rpc-addr", &three_rpc],
    )
    .unwrap();
    wait_per_node(&browser, "data-state", "node three up again", |s| {
        s == ["up", "up", "up"]
    });
    // Restarted with node one for its only peer: it must know node two too, or the
    // partition below leaves it alone on a branch of its own.
    three
        .rpc
        .call("net_connect", json!({"addr": two.p2p_addr()}))
        .unwrap();
    let two_id = two.peer_id();
    wait_until(WAIT, "node three to rejoin both", || {
        three.peer_count() == 2 && peer_entry(&three, &two_id).is_some()
    });

    // Partitioned, node one against the other two: each side mines its own blocks.
    let ban = |a: &NodeProcess, b: &NodeProcess| {
        a.rpc
            .call(
                "net_disconnect",
                json!({"peer_id": b.peer_id(), "ban_seconds": 3600}),
            )
            .unwrap();
    };
    for other in [&two, &three] {
        ban(&one, other);
        ban(other, &one);
    }
    wait_until(WAIT, "node one to be cut off", || one.peer_count() == 0);
    one.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    two.rpc.call("dev_mine", json!({"blocks": 2})).unwrap();
    // The table and the picture agree (a poll under load may catch a node slow to
    // answer; the test waits for a render where all three answered).
    wait_until(WAIT, "two branches", || {
        let b = per_node(&browser, "data-branch");
        b.len() == 3
            && !b[0].is_empty()
            && b[0] != b[1]
            && b[1] == b[2]
            && browser.count("#fork-picture text[data-branch]") == 2
    });
    // The delay chart (log scale) labels the blocks of each side with its branch.
    wait_until(WAIT, "branch labels in the delay chart", || {
        let labels = browser.attributes("#delay-chart text.branch-label", "data-branch");
        let distinct: std::collections::BTreeSet<_> = labels.into_iter().flatten().collect();
        distinct.len() == 2
    });
    assert_eq!(
        browser.attributes("#delay-chart", "data-scale"),
        vec![Some("log".to_string())]
    );
    browser.screenshot("partitioned");

    // Healed: one branch again, the heavier one.
    for other in [&two, &three] {
        one.rpc
            .call("net_connect", json!({"addr": other.p2p_addr()}))
            .unwrap();
        other
            .rpc
            .call("net_connect", json!({"addr": one.p2p_addr()}))
            .unwrap();
    }
    wait_until(WAIT, "one branch", || {
        let b = per_node(&browser, "data-branch");
        b.len() == 3
            && !b[0].is_empty()
            && b[0] == b[1]
            && b[1] == b[2]
            && browser.count("#fork-picture text[data-branch]") == 1
    });
    assert_eq!(one.tip(), two.tip());
    assert_eq!(one.tip().0, 4);
    browser.screenshot("healed");

    // No block for five block times (5 s here): the dashboard says so, until one comes.
    browser.wait_text("#stalled", WAIT, |t| t.contains("No new block"));
    browser.screenshot("stalled");
    two.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_until(WAIT, "the warning to go", || browser.count("#stalled") == 0);
}

/// Pages have links of their own (/explorer/block/1), old #/ links still work, numbers
/// have thousands separators, hashes and addresses copy, an empty mempool and a chain
/// that stopped say so, and an address page adds up what it received and sent.
#[test]
fn the_explorer_reads_well_and_every_page_has_a_link() {
    let dir = TempDir::new().unwrap();
    let spec = write_test_spec(dir.path());
    let node = NodeProcess::start(&dir.path().join("node"), Some(&spec), &[]).unwrap();
    node.rpc
        .call("dev_mine", json!({"blocks": 2, "address": address_text(1)}))
        .unwrap();
    let browser = browser("explorer_reads_well");

    // A page by its path, and an old link turned into one.
    browser.goto(&explorer(&node, "/block/1"));
    browser.wait_text("#block-height", WAIT, |t| t == "1");
    browser.goto(&explorer(&node, "#/block/2"));
    browser.wait_text("#block-height", WAIT, |t| t == "2");
    assert_eq!(
        browser.eval("return window.location.pathname;"),
        json!("/explorer/block/2")
    );
    // Links inside go by path too, without a reload.
    browser.eval("window.__kept = 1; return 1;");
    browser.click("#view dd a[data-route]");
    browser.wait_text("#block-height", WAIT, |t| t == "1");
    // (The previous block's link names it by hash.)
    assert_eq!(
        browser.eval("return window.location.pathname;"),
        json!(format!("/explorer/block/{}", node.block_hash(1)))
    );
    assert_eq!(browser.eval("return window.__kept;"), json!(1));

    // An address with a genesis allocation and two rewards: separators, and totals.
    let rich = address_text(1);
    browser.goto(&explorer(&node, &format!("/address/{rich}")));
    let totals = node
        .rpc
        .call("account_totals", json!({"address": rich}))
        .unwrap();
    let coins = |units: &serde_json::Value| {
        let units: u64 = units.as_str().unwrap().parse().unwrap();
        format!("{} coins", units / 100_000_000)
    };
    browser.wait_text("#allocated", WAIT, |t| t == "1,000 coins");
    browser.wait_text("#received", WAIT, |t| t == coins(&totals["received"]));
    browser.wait_text("#sent", WAIT, |t| t == "0 coins");
    let balance = browser.text("#balance").unwrap();
    assert!(
        balance.starts_with("1,") && balance.ends_with(" coins"),
        "{balance}"
    );
    assert_eq!(browser.text("#address").as_deref(), Some(rich.as_str()));
    browser.click("#address button.copy");
    wait_until(WAIT, "the address to be copied", || {
        browser.attributes("#address button.copy", "data-copied") == vec![Some("yes".into())]
    });
    browser.screenshot("address");

    // An empty mempool says so.
    browser.goto(&explorer(&node, "/mempool"));
    browser.wait_text("#mempool-empty", WAIT, |t| t.contains("empty"));

    // No block for five block times (5 s here): the home page says so, until one comes.
    browser.goto(&explorer(&node, ""));
    browser.wait_text("#stalled", WAIT, |t| t.contains("No new block"));
    browser.screenshot("stalled");
    node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap();
    wait_until(WAIT, "the warning to go", || browser.count("#stalled") == 0);
}
