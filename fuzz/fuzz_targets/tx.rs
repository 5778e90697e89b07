//! A transaction as a peer gossips it or a user submits it: one encoding per transaction,
//! its id the hash of exactly those bytes, our signature verdict the oracle's (with our
//! documented refusals), RFC 8032's strict check never looser; then the node's gossip
//! judge takes it (the mempool's path, which applies the same rule in batches).
#![no_main]

use apiary_core::hash::sha256d;
use apiary_core::tx::{verify_signatures, KeyCache, MAX_TX_BYTES};
use apiary_core::{decode_exact, SignedTransaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(stx) = decode_exact::<SignedTransaction>("tx", data, MAX_TX_BYTES) else {
        apiary_node::p2p::fuzzing::judge_tx(apiary_fuzz::shared_node(), data);
        return;
    };
    assert_eq!(stx.encode(), data, "one encoding per transaction");
    assert_eq!(stx.txid().0, sha256d(data));
    let consensus = verify_signatures(
        std::slice::from_ref(&stx),
        &[stx.txid()],
        &KeyCache::new(16),
    )
    .is_ok();
    assert_eq!(consensus, apiary_fuzz::expected_verdict(&stx));
    if stx.verify_signature().is_ok() {
        assert!(
            consensus,
            "RFC 8032's strict check is stricter than consensus"
        );
    }
    apiary_node::p2p::fuzzing::judge_tx(apiary_fuzz::shared_node(), data);
});
