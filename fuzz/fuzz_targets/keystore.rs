//! A wallet keystore file as found on disk: whatever is accepted is exactly as this wallet
//! writes it (canonical JSON with a good checksum); unlocking a parsed one with a wrong
//! password fails cleanly. Key derivation runs only for cheap parameters (argon2 with the
//! file's own cost is the point of a keystore; its bounds are checked before).
#![no_main]

use apiary_wallet::keystore::Keystore;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/keystore.json");
    let Ok(keystore) = Keystore::parse(path, data) else {
        return;
    };
    assert!(!keystore.accounts().is_empty());
    assert!(keystore.account(keystore.default_account()).is_ok());
    if keystore.kdf().memory_kib <= 64 && keystore.kdf().iterations <= 2 {
        assert!(keystore.unlock(b"not the password").is_err());
    }
});
