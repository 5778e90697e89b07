//! A chain spec file as a user writes it: whatever parses is a valid spec, and writing it
//! back out gives a file that parses to the same spec and the same genesis.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = apiary_genesis::parse_spec(text) else {
        return;
    };
    assert!(spec.validate().is_ok());
    let written = apiary_genesis::spec_to_toml(&spec);
    let again = apiary_genesis::parse_spec(&written)
        .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{written}"));
    assert_eq!(again, spec);
    assert_eq!(again.spec_hash(), spec.spec_hash());
});
