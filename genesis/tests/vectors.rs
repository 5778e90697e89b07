//! The devnet's genesis as a golden vector (`core/tests/vectors/devnet-genesis.json`): every
//! node of the built-in chain must derive exactly this block and hash from the embedded
//! spec. `APIARY_WRITE_VECTORS=1` rewrites it on purpose (see core/tests/vectors.rs).

#[path = "../../core/tests/common/mod.rs"]
mod common;

#[test]
fn the_devnet_genesis_matches_its_vector() {
    let spec = apiary_genesis::devnet();
    let vector = common::check_against_pinned("devnet-genesis.json", &common::genesis_json(&spec));
    // Pinned here too, so rewriting the vector alone cannot change it.
    assert_eq!(
        vector["genesis_hash"],
        "7f327c1aeefeb2a6b36d3849ffcc9d0dce220c5651007fa2a32b0805af26949f"
    );
    assert_eq!(
        spec.genesis_hash().to_string(),
        "7f327c1aeefeb2a6b36d3849ffcc9d0dce220c5651007fa2a32b0805af26949f",
        "the devnet's genesis hash"
    );
}
