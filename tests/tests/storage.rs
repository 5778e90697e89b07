//! What the node does when its disk fills up: it says so, pauses what writes, loses
//! nothing it reported, and resumes by itself once there is room. Runs on a small tmpfs
//! (mounting one needs root, as the test machines have).

use apiary_system_tests::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// A tmpfs of `megabytes` at `path`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, megabytes: u32) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(path)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Takes all but `leave` bytes of the file system holding `dir` into one file.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let free = apiary_node::health::free_bytes(dir).unwrap();
    let size = free.saturating_sub(leave);
    let file = std::fs::File::create(&path).unwrap();
    // tmpfs has no fallocate reservations to trust: write real pages.
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    use std::io::Write;
    let mut writer = std::io::BufWriter::new(file);
    while written + (chunk.len() as u64) <= size {
        if writer.write_all(&chunk).is_err() {
            break;
        }
        written += chunk.len() as u64;
    }
    let _ = writer.flush();
    path
}

#[test]
fn a_full_disk_pauses_the_node_loses_nothing_and_it_resumes() {
    let dir = TempDir::new().unwrap();
    // Hundreds of blocks a second: the 1 MiB left fills in seconds, the room made later
    // lasts for a while.
    let spec = write_spec(
        dir.path(),
        &[
            "--block-time-ms",
            "1000",
            "--half-life-ms",
            "1000000000",
            "--initial-hashes",
            "20000",
            "--min-hashes",
            "2",
        ],
    );
    let disk = Tmpfs::mount(&dir.path().join("disk"), 20);
    let datadir = disk.0.join("node");
    let miner = address_text(9);
    let args = ["--mine", "--miner-address", &miner, "--mine-threads", "1"];
    let mut node = NodeProcess::start(&datadir, Some(&spec), &args).unwrap();
    wait_until(Duration::from_secs(60), "a few blocks", || {
        node.rpc.tip_height() >= 5
    });

    // Leave the node a little room, then keep it busy until it runs out.
    let filler = fill(&disk.0, 1 << 20);
    let mut reported: BTreeMap<u64, String> = BTreeMap::new();
    let mut nonce = [0u64; 4];
    wait_until(
        Duration::from_secs(300),
        "the node to say its disk is full",
        || {
            let (height, hash) = node.tip();
            reported.insert(height, hash);
            for sender in 1..=3u8 {
                let stx = transfer(sender, address(20), 1, 10_000, nonce[sender as usize]);
                if node.try_submit_tx(&stx).is_ok() {
                    nonce[sender as usize] += 1;
                }
            }
            let info = node.rpc.call("node_info", json!({})).unwrap();
            !info["storage_full"].is_null()
        },
    );
    let info = node.rpc.call("node_info", json!({})).unwrap();
    let message = info["storage_full"].as_str().unwrap().to_string();
    assert!(message.contains(datadir.to_str().unwrap()), "{message}");

    // Paused, not dead: RPC answers, writes are refused with the storage error.
    let refused = node
        .try_submit_tx(&transfer(1, address(21), 1, 10_000, nonce[1]))
        .unwrap_err();
    assert_eq!(refused.code, -32030, "{refused:?}");
    let refused = node.rpc.call("dev_mine", json!({"blocks": 1})).unwrap_err();
    assert_eq!(refused.code, -32030, "{refused:?}");
    let (height, hash) = node.tip();
    reported.insert(height, hash);

    // Room again: it resumes by itself and mines on.
    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(60), "the node to resume", || {
        node.rpc.call("node_info", json!({})).unwrap()["storage_full"].is_null()
    });
    wait_until(Duration::from_secs(60), "mining to go on", || {
        node.rpc.tip_height() > height + 3
    });
    assert!(node.pid() != 0);

    // Nothing it reported was lost, across a crash too.
    node.kill9();
    let node = NodeProcess::start(&datadir, Some(&spec), &[]).unwrap();
    for (height, hash) in &reported {
        assert_eq!(node.block_hash(*height), *hash, "block {height} changed");
    }
}
