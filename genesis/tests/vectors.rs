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
        "8d9355f4c0641c0277047870e7b431badf38653218d25dd8a1757852d30631a1"
    );
    assert_eq!(
        spec.genesis_hash().to_string(),
        "8d9355f4c0641c0277047870e7b431badf38653218d25dd8a1757852d30631a1",
        "the devnet's genesis hash"
    );
}
