//! No task dies alone: a core task that ends while the node runs, or a panic while the
//! chain state is held, fails the node with why; an end during shutdown is no fault.

mod common;

use apiary_node::health::CoreTask;
use common::*;
use tempfile::TempDir;

#[test]
fn a_core_task_that_panics_fails_the_node_and_says_which() {
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &test_spec(100));
    let task = node.clone();
    let ended = std::thread::spawn(move || {
        let _running = CoreTask::new(task, "miner");
        panic!("a bug");
    })
    .join();
    assert!(ended.is_err());
    let reason = node.health().fatal_reason().expect("the node failed");
    assert!(
        reason.contains("miner") && reason.contains("panicked"),
        "{reason}"
    );
}

#[test]
fn a_core_task_that_returns_while_the_node_runs_fails_it() {
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &test_spec(100));
    drop(CoreTask::new(node.clone(), "network service"));
    let reason = node.health().fatal_reason().expect("the node failed");
    assert!(reason.contains("network service stopped"), "{reason}");
}

#[test]
fn a_core_task_that_ends_at_shutdown_is_no_fault() {
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &test_spec(100));
    let running = CoreTask::new(node.clone(), "sync importer");
    node.request_shutdown();
    drop(running);
    assert_eq!(node.health().fatal_reason(), None);
}

#[test]
fn a_panic_while_the_chain_state_is_held_fails_the_node() {
    let dir = TempDir::new().unwrap();
    let node = open_node(dir.path(), &test_spec(100));
    let holder = node.clone();
    let ended = std::thread::spawn(move || {
        let _state = holder.lock();
        panic!("a bug in the middle of a change");
    })
    .join();
    assert!(ended.is_err());
    // The next to take the state finds it poisoned: reads go on, the node is failing.
    assert_eq!(node.lock().chain.height().0, 0);
    let reason = node.health().fatal_reason().expect("the node failed");
    assert!(reason.contains("panicked"), "{reason}");
}
