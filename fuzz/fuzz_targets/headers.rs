//! A run of headers as sync receives it, checked in full before any body is asked for
//! (`check_headers`): what passes is a prefix, each header the child of the one before,
//! each meeting its own proof of work. The first byte is a mode: bit 0 links each header
//! to the one before (and the first to genesis), so inputs reach the rules behind.
#![no_main]

use apiary_core::validate::check_header_pow;
use apiary_core::{check_headers, decode_exact, BlockHeader, HeaderAncestry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(mut headers) = decode_exact::<Vec<BlockHeader>>("headers", bytes, 1 << 20) else {
        return;
    };
    let spec = apiary_fuzz::spec();
    let genesis = &apiary_fuzz::genesis().header;
    let genesis_hash = genesis.hash();
    if mode & 1 == 1 {
        let mut parent = genesis_hash;
        for header in &mut headers {
            header.prev_hash = parent;
            parent = header.hash();
        }
    }
    let mut ancestry = HeaderAncestry::new(
        genesis_hash,
        genesis,
        &[genesis.timestamp_ms],
        genesis.bits.to_target().unwrap().work(),
        &spec,
    );
    let now_ms = spec.genesis_timestamp_ms + 3_600_000;
    let checked = check_headers(&mut ancestry, &headers, now_ms, &spec);
    assert!(checked.hashes.len() <= headers.len());
    if let Some((index, _)) = &checked.stopped {
        assert_eq!(
            *index,
            checked.hashes.len(),
            "the error names the first bad header"
        );
    }
    let mut parent = genesis_hash;
    for (header, hash) in headers.iter().zip(&checked.hashes) {
        assert_eq!(header.hash(), *hash);
        assert_eq!(header.prev_hash, parent);
        assert!(check_header_pow(header, &spec).is_ok());
        parent = *hash;
    }
    assert_eq!(
        ancestry.hash(),
        parent,
        "the ancestry moved to the last good header"
    );
});
