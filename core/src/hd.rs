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

/// Words that are not a BIP39 mnemonic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MnemonicError {
    /// Why not (a word, the count, the checksum).
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

/// The address of `key`: its ed25519 public key.
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

    /// SLIP-0010 test vector 2 for ed25519 (the 64-byte seed fffcf9…4542).
    #[test]
    fn matches_slip10_ed25519_vector_2() {
        let seed = hex::decode("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542").unwrap();
        let cases: [(&[u32], &str, &str); 3] = [
            (
                &[],
                "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
                "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b",
            ),
            (
                &[0],
                "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
                "0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d",
            ),
            (
                &[0, 2_147_483_647],
                "ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4",
                "138f0b2551bcafeca6ff2aa88ba8ed0ed8de070841f0c4ef0165df8181eaad7f",
            ),
        ];
        for (path, key, chain) in cases {
            let (found_key, found_chain) = slip10_derive(&seed, path);
            assert_eq!(hex::encode(found_key), key, "key at {path:?}");
            assert_eq!(hex::encode(found_chain), chain, "chain code at {path:?}");
        }
        let (key, _) = slip10_derive(&seed, &[0, 2_147_483_647]);
        assert_eq!(
            hex::encode(SigningKey::from_bytes(&key).verifying_key().to_bytes()),
            "5ba3b9ac6e90e83effcd25ac4e58a1365a9e35a3d3ae5eb07b9e4d90bcf7506d"
        );
    }

    /// BIP39 reference vectors (Trezor's, passphrase "TREZOR"): entropy → words → seed.
    #[test]
    fn matches_bip39_reference_vectors() {
        let vectors = [
            (
                "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
                "legal winner thank year wave sausage worth useful legal winner thank yellow",
                "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607",
            ),
            (
                "8080808080808080808080808080808080808080808080808080808080808080",
                "letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless",
                "c0c519bd0e91a2ed54357d9d1ebef6f5af218a153624cf4f2da911a0ed8f7a09e2ef61af0aca007096df430022f7a2b6fb91661a9589097069720d015e4e982f",
            ),
            (
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote",
                "dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad",
            ),
        ];
        for (entropy, words, seed) in vectors {
            let mnemonic = bip39::Mnemonic::from_entropy(&hex::decode(entropy).unwrap()).unwrap();
            assert_eq!(mnemonic.to_string(), words);
            assert_eq!(
                hex::encode(seed_from_mnemonic(words, "TREZOR").unwrap()),
                seed
            );
        }
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
