//! Keys from a BIP39 mnemonic: seed by BIP39, then SLIP-0010 ed25519 derivation along
//! m/44'/7877'/ACCOUNT'/0'/0' (all hardened, as ed25519 requires). The devnet's published
//! accounts and the wallet both use this, so importing a devnet mnemonic gives its address.

use crate::address::Address;
use ed25519_dalek::SigningKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

/// Apiary's coin type in the derivation path (unregistered; "AP" in ASCII, 0x41 0x50 → 7877 is arbitrary but fixed).
pub const COIN_TYPE: u32 = 7877;
const HARDENED: u32 = 0x8000_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MnemonicError {
    #[error("not a valid BIP39 mnemonic: {0}")]
    Invalid(String),
}

/// The 64-byte BIP39 seed of a mnemonic (with an optional passphrase).
pub fn seed_from_mnemonic(phrase: &str, passphrase: &str) -> Result<[u8; 64], MnemonicError> {
    let mnemonic =
        bip39::Mnemonic::parse(phrase).map_err(|e| MnemonicError::Invalid(e.to_string()))?;
    Ok(mnemonic.to_seed(passphrase))
}

/// SLIP-0010 ed25519 derivation of `seed` along hardened `path` (indices without the
/// hardened bit). Returns the private key and chain code.
pub fn slip10_derive(seed: &[u8], path: &[u32]) -> ([u8; 32], [u8; 32]) {
    let (mut key, mut chain_code) = split(hmac_sha512(b"ed25519 seed", &[seed]));
    for index in path {
        let hardened = (index | HARDENED).to_be_bytes();
        (key, chain_code) = split(hmac_sha512(&chain_code, &[&[0u8], &key, &hardened]));
    }
    (key, chain_code)
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut mac =
        <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn split(bytes: [u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut left = [0u8; 32];
    let mut right = [0u8; 32];
    left.copy_from_slice(&bytes[..32]);
    right.copy_from_slice(&bytes[32..]);
    (left, right)
}

/// The derivation path of account `index`.
pub fn account_path(index: u32) -> [u32; 5] {
    [44, COIN_TYPE, index, 0, 0]
}

/// The signing key of account `index` of a wallet seed.
pub fn account_key(seed: &[u8], index: u32) -> SigningKey {
    let (secret, _) = slip10_derive(seed, &account_path(index));
    SigningKey::from_bytes(&secret)
}

pub fn address_of(key: &SigningKey) -> Address {
    Address(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SLIP-0010 test vector 1 for ed25519 (seed 000102…0f).
    #[test]
    fn matches_slip10_ed25519_vector_1() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let (key, chain) = slip10_derive(&seed, &[]);
        assert_eq!(
            hex::encode(key),
            "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7"
        );
        assert_eq!(
            hex::encode(chain),
            "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb"
        );
        let (key, chain) = slip10_derive(&seed, &[0, 1, 2, 2, 1_000_000_000]);
        assert_eq!(
            hex::encode(key),
            "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793"
        );
        assert_eq!(
            hex::encode(chain),
            "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230"
        );
        let public = SigningKey::from_bytes(&key).verifying_key().to_bytes();
        assert_eq!(
            hex::encode(public),
            "3c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a"
        );
    }

    /// BIP39 reference vector: "abandon … about" with passphrase "TREZOR".
    #[test]
    fn matches_bip39_seed_vector() {
        let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        let seed = seed_from_mnemonic(phrase, "TREZOR").unwrap();
        assert_eq!(
            hex::encode(seed),
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"
        );
        assert!(seed_from_mnemonic("abandon abandon", "").is_err());
    }
}
