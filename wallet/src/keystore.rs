//! The keystore: one JSON file holding the wallet's BIP39 mnemonic encrypted at rest
//! (argon2id → XChaCha20-Poly1305) and, in the clear, the chain it is for and the addresses
//! of its accounts (public, so `address` and `balance` need no password).
//!
//! A file is accepted only if it is exactly the canonical form of its contents and its
//! checksum matches, so any truncation or flipped byte is reported as damage, never as a
//! wrong password; a wrong password is the AEAD refusing an intact file. Writes go to a
//! temporary file that is synced and then renamed over the old one: an interrupted write
//! leaves the previous keystore as it was (`apiary_files::write_atomically`).

use apiary_core::hd::{account_key, address_of, seed_from_mnemonic};
use apiary_core::{Address, AddressPrefix, SigningKey};
use apiary_files::write_atomically;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const KEYSTORE_VERSION: u32 = 1;
pub const KEYSTORE_FILE: &str = "wallet.json";
const KDF_ALGORITHM: &str = "argon2id";
/// Most memory (4 GiB) and passes a keystore's key derivation may ask for.
pub const MAX_KDF_MEMORY_KIB: u32 = 4 << 20;
pub const MAX_KDF_ITERATIONS: u32 = 1_000;
const CIPHER: &str = "xchacha20poly1305";

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no wallet at {0}: create one with `apiary-wallet new` or `apiary-wallet import`")]
    Missing(PathBuf),
    #[error("a wallet already exists at {0}; refusing to overwrite it (move it away first)")]
    Exists(PathBuf),
    #[error("keystore {path} is damaged ({reason}); it was left untouched")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "keystore {path} has format version {found}; this wallet reads version {KEYSTORE_VERSION}"
    )]
    UnsupportedVersion { path: PathBuf, found: u64 },
    #[error("wrong password for keystore {0}")]
    WrongPassword(PathBuf),
    #[error("the mnemonic is not valid: {0}")]
    BadMnemonic(String),
    #[error("account {0} is not in this wallet (see `apiary-wallet account list`)")]
    NoSuchAccount(u32),
    #[error("keystore {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Cost of deriving the encryption key from the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hex of 16 random bytes.
    pub salt: String,
}

impl KdfParams {
    /// OWASP's argon2id recommendation with more memory: ~0.1–0.3 s on a laptop core.
    pub fn recommended() -> KdfParams {
        KdfParams {
            algorithm: KDF_ALGORITHM.into(),
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
            salt: hex::encode(random::<16>()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    pub index: u32,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The file, field for field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    version: u32,
    chain_id: String,
    address_prefix: String,
    kdf: KdfParams,
    cipher: String,
    /// Hex of the 24-byte XChaCha20 nonce.
    nonce: String,
    /// Hex of the encrypted mnemonic phrase.
    ciphertext: String,
    accounts: Vec<AccountEntry>,
    default_account: u32,
    /// SHA-256 of this file written with an empty checksum: catches damage (not forgery).
    checksum: String,
}

impl KeystoreFile {
    fn canonical(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serialises");
        text.push('\n');
        text
    }

    fn with_checksum(mut self) -> KeystoreFile {
        self.checksum = String::new();
        self.checksum = hex::encode(Sha256::digest(self.canonical().as_bytes()));
        self
    }

    /// What the ciphertext is bound to: everything that says how to decrypt it and for
    /// which chain.
    fn associated_data(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            self.version,
            &self.chain_id,
            &self.address_prefix,
            &self.kdf,
            &self.cipher,
        ))
        .expect("plain data serialises")
    }
}

/// A loaded keystore. Public parts are readable; the mnemonic needs the password.
#[derive(Clone, Debug)]
pub struct Keystore {
    path: PathBuf,
    file: KeystoreFile,
    prefix: AddressPrefix,
}

/// The decrypted wallet secret: the BIP39 seed. Wiped from memory when dropped.
pub struct Unlocked {
    seed: Zeroizing<[u8; 64]>,
}

impl Unlocked {
    pub fn key(&self, index: u32) -> SigningKey {
        account_key(&*self.seed, index)
    }
}

/// A fresh 24-word mnemonic from the operating system's randomness.
pub fn generate_mnemonic() -> Zeroizing<String> {
    let entropy = Zeroizing::new(random::<32>());
    let mnemonic =
        bip39::Mnemonic::from_entropy(&*entropy).expect("32 bytes of entropy make a mnemonic");
    Zeroizing::new(mnemonic.to_string())
}

/// Normalises a typed mnemonic (case, spacing) and checks its words and checksum.
pub fn parse_mnemonic(text: &str) -> Result<Zeroizing<String>, KeystoreError> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let phrase = Zeroizing::new(words.join(" "));
    seed_from_mnemonic(&phrase, "").map_err(|e| KeystoreError::BadMnemonic(e.to_string()))?;
    Ok(phrase)
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    bytes
}

fn derive_key(
    password: &[u8],
    kdf: &KdfParams,
    path: &Path,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let corrupt = |reason: String| KeystoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if kdf.algorithm != KDF_ALGORITHM {
        return Err(corrupt(format!(
            "unknown key derivation {:?}",
            kdf.algorithm
        )));
    }
    // argon2 would try to allocate whatever the file says (a flipped or edited field could
    // ask for terabytes, or run for days): far beyond anything this wallet writes is refused.
    if kdf.memory_kib > MAX_KDF_MEMORY_KIB || kdf.iterations > MAX_KDF_ITERATIONS {
        return Err(corrupt(format!(
            "argon2 parameters: {} KiB and {} iterations exceed this wallet's limits \
             ({MAX_KDF_MEMORY_KIB} KiB, {MAX_KDF_ITERATIONS} iterations)",
            kdf.memory_kib, kdf.iterations
        )));
    }
    let salt = hex::decode(&kdf.salt).map_err(|e| corrupt(format!("salt: {e}")))?;
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| corrupt(format!("argon2 parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, &salt, &mut *key)
        .map_err(|e| corrupt(format!("argon2: {e}")))?;
    Ok(key)
}

impl Keystore {
    /// Where the keystore of `wallet_dir` lives.
    pub fn path_in(wallet_dir: &Path) -> PathBuf {
        wallet_dir.join(KEYSTORE_FILE)
    }

    /// Encrypts `mnemonic` under `password` and writes a new keystore with account 0;
    /// refuses if one exists.
    pub fn create(
        path: &Path,
        mnemonic: &str,
        password: &[u8],
        chain_id: &str,
        prefix: &AddressPrefix,
        kdf: KdfParams,
    ) -> Result<Keystore, KeystoreError> {
        if path.exists() {
            return Err(KeystoreError::Exists(path.to_path_buf()));
        }
        let phrase = parse_mnemonic(mnemonic)?;
        let seed = Zeroizing::new(
            seed_from_mnemonic(&phrase, "")
                .map_err(|e| KeystoreError::BadMnemonic(e.to_string()))?,
        );
        let first = address_of(&account_key(&*seed, 0)).to_text(prefix);
        let mut file = KeystoreFile {
            version: KEYSTORE_VERSION,
            chain_id: chain_id.to_string(),
            address_prefix: prefix.as_str().to_string(),
            kdf,
            cipher: CIPHER.into(),
            nonce: String::new(),
            ciphertext: String::new(),
            accounts: vec![AccountEntry {
                index: 0,
                address: first,
                label: None,
            }],
            default_account: 0,
            checksum: String::new(),
        };
        let key = derive_key(password, &file.kdf, path)?;
        let nonce = random::<24>();
        let ciphertext = XChaCha20Poly1305::new((&*key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: phrase.as_bytes(),
                    aad: &file.associated_data(),
                },
            )
            .expect("encryption into memory cannot fail");
        file.nonce = hex::encode(nonce);
        file.ciphertext = hex::encode(ciphertext);
        let keystore = Keystore {
            path: path.to_path_buf(),
            file: file.with_checksum(),
            prefix: prefix.clone(),
        };
        keystore.save()?;
        Ok(keystore)
    }

    /// Reads and checks a keystore without decrypting anything.
    pub fn load(path: &Path) -> Result<Keystore, KeystoreError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::Missing(path.to_path_buf()))
            }
            Err(source) => {
                return Err(KeystoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Keystore::parse(path, &bytes)
    }

    /// Checks the contents `bytes` of the keystore at `path` without decrypting anything.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Keystore, KeystoreError> {
        let corrupt = |reason: String| KeystoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.is_empty() {
            return Err(corrupt("the file is empty".into()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".into()))?;
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| corrupt(format!("not valid JSON, truncated or damaged: {e}")))?;
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(version) if version == u64::from(KEYSTORE_VERSION) => {}
            Some(found) => {
                return Err(KeystoreError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                })
            }
            None => return Err(corrupt("no format version".into())),
        }
        let file: KeystoreFile = serde_json::from_value(value)
            .map_err(|e| corrupt(format!("unexpected contents: {e}")))?;
        if file.canonical() != text {
            return Err(corrupt(
                "not as this wallet writes it: edited or damaged".into(),
            ));
        }
        if file.clone().with_checksum().checksum != file.checksum {
            return Err(corrupt("checksum mismatch".into()));
        }
        if file.cipher != CIPHER {
            return Err(corrupt(format!("unknown cipher {:?}", file.cipher)));
        }
        let prefix = AddressPrefix::new(&file.address_prefix)
            .map_err(|e| corrupt(format!("address prefix: {e}")))?;
        for account in &file.accounts {
            Address::parse(&account.address, &prefix)
                .map_err(|e| corrupt(format!("account {}: {e}", account.index)))?;
        }
        if !file
            .accounts
            .iter()
            .any(|a| a.index == file.default_account)
        {
            return Err(corrupt("the default account is not listed".into()));
        }
        Ok(Keystore {
            path: path.to_path_buf(),
            file,
            prefix,
        })
    }

    /// Decrypts the seed; checks that it still derives the listed addresses.
    pub fn unlock(&self, password: &[u8]) -> Result<Unlocked, KeystoreError> {
        let corrupt = |reason: String| KeystoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let nonce = hex::decode(&self.file.nonce)
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or_else(|| corrupt("nonce is not 24 bytes of hex".into()))?;
        let ciphertext =
            hex::decode(&self.file.ciphertext).map_err(|e| corrupt(format!("ciphertext: {e}")))?;
        let key = derive_key(password, &self.file.kdf, &self.path)?;
        let phrase = XChaCha20Poly1305::new((&*key).into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &self.file.associated_data(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeystoreError::WrongPassword(self.path.clone()))?;
        let phrase = std::str::from_utf8(&phrase)
            .map_err(|_| corrupt("decrypted mnemonic is not text".into()))?;
        let unlocked = Unlocked {
            seed: Zeroizing::new(
                seed_from_mnemonic(phrase, "").map_err(|e| corrupt(format!("mnemonic: {e}")))?,
            ),
        };
        for account in &self.file.accounts {
            let derived = address_of(&unlocked.key(account.index)).to_text(&self.prefix);
            if derived != account.address {
                return Err(corrupt(format!(
                    "account {} is listed as {} but the seed derives {derived}",
                    account.index, account.address
                )));
            }
        }
        Ok(unlocked)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What deriving the key costs.
    pub fn kdf(&self) -> &KdfParams {
        &self.file.kdf
    }

    pub fn chain_id(&self) -> &str {
        &self.file.chain_id
    }

    pub fn prefix(&self) -> &AddressPrefix {
        &self.prefix
    }

    pub fn accounts(&self) -> &[AccountEntry] {
        &self.file.accounts
    }

    pub fn default_account(&self) -> u32 {
        self.file.default_account
    }

    pub fn account(&self, index: u32) -> Result<&AccountEntry, KeystoreError> {
        self.file
            .accounts
            .iter()
            .find(|a| a.index == index)
            .ok_or(KeystoreError::NoSuchAccount(index))
    }

    /// Adds the next account (derived from the unlocked seed) and saves.
    pub fn add_account(
        &mut self,
        unlocked: &Unlocked,
        label: Option<String>,
    ) -> Result<AccountEntry, KeystoreError> {
        let index = self
            .file
            .accounts
            .iter()
            .map(|a| a.index + 1)
            .max()
            .unwrap_or(0);
        let entry = AccountEntry {
            index,
            address: address_of(&unlocked.key(index)).to_text(&self.prefix),
            label,
        };
        let mut file = self.file.clone();
        file.accounts.push(entry.clone());
        self.replace(file)?;
        Ok(entry)
    }

    pub fn set_default_account(&mut self, index: u32) -> Result<(), KeystoreError> {
        self.account(index)?;
        let mut file = self.file.clone();
        file.default_account = index;
        self.replace(file)
    }

    /// Saves `file` in place of the current contents; memory changes only if the write did.
    fn replace(&mut self, file: KeystoreFile) -> Result<(), KeystoreError> {
        let previous = std::mem::replace(&mut self.file, file.with_checksum());
        if let Err(error) = self.save() {
            self.file = previous;
            return Err(error);
        }
        Ok(())
    }

    fn save(&self) -> Result<(), KeystoreError> {
        write_atomically(&self.path, |out| {
            out.write_all(self.file.canonical().as_bytes())
        })
        .map_err(|source| KeystoreError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The devnet's first published account (README): importing it gives its address.
    const DEVNET_MNEMONIC: &str = "absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice comic";
    const DEVNET_ADDRESS: &str = "apdev1nye7zzkr5ghqjprzet75ccuw06pna4hrlg6mjhnmu4227r6cthmq2k0ee9";
    const ABOUT: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    /// Cheap parameters: the tests check the format, not the cost.
    fn test_kdf() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..KdfParams::recommended()
        }
    }

    fn prefix() -> AddressPrefix {
        AddressPrefix::new("apdev").unwrap()
    }

    fn create(dir: &Path) -> Keystore {
        Keystore::create(
            &Keystore::path_in(dir),
            DEVNET_MNEMONIC,
            b"correct horse",
            "apiary-devnet",
            &prefix(),
            test_kdf(),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_accounts() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut keystore = create(dir.path());
        let path = Keystore::path_in(dir.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let loaded = Keystore::load(&path).unwrap();
        assert_eq!(loaded.accounts(), keystore.accounts());
        let unlocked = loaded.unlock(b"correct horse").unwrap();
        assert_eq!(
            loaded.accounts()[0].address,
            DEVNET_ADDRESS,
            "importing a devnet mnemonic yields the README's address"
        );
        let added = keystore
            .add_account(&unlocked, Some("savings".into()))
            .unwrap();
        assert_eq!(added.index, 1);
        keystore.set_default_account(1).unwrap();
        let loaded = Keystore::load(&path).unwrap();
        assert_eq!(loaded.default_account(), 1);
        assert_eq!(loaded.accounts().len(), 2);
        assert!(loaded.unlock(b"correct horse").is_ok());
        assert!(matches!(
            keystore.set_default_account(7),
            Err(KeystoreError::NoSuchAccount(7))
        ));
        assert!(matches!(
            Keystore::create(
                &path,
                DEVNET_MNEMONIC,
                b"x",
                "apiary-devnet",
                &prefix(),
                test_kdf()
            ),
            Err(KeystoreError::Exists(_))
        ));
    }

    #[test]
    fn a_wrong_password_is_told_apart_from_damage() {
        let dir = tempfile::TempDir::new().unwrap();
        create(dir.path());
        let loaded = Keystore::load(&Keystore::path_in(dir.path())).unwrap();
        let error = loaded.unlock(b"battery staple").err().unwrap();
        assert!(matches!(error, KeystoreError::WrongPassword(_)), "{error}");
        assert!(error.to_string().contains("wrong password"));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_reported_as_damage() {
        let dir = tempfile::TempDir::new().unwrap();
        create(dir.path());
        let path = Keystore::path_in(dir.path());
        let original = std::fs::read(&path).unwrap();
        let damaged = dir.path().join("damaged.json");
        let refused = |bytes: &[u8]| {
            std::fs::write(&damaged, bytes).unwrap();
            match Keystore::load(&damaged) {
                Err(KeystoreError::Corrupt { reason, .. }) => reason,
                Err(KeystoreError::UnsupportedVersion { found, .. }) => format!("version {found}"),
                Err(other) => panic!("unexpected error {other}"),
                Ok(_) => panic!("a damaged keystore was accepted"),
            }
        };
        for length in 0..original.len() {
            refused(&original[..length]);
        }
        for position in 0..original.len() {
            for flip in [0x01u8, 0x20, 0x80] {
                let mut bytes = original.clone();
                bytes[position] ^= flip;
                refused(&bytes);
            }
        }
        // The original is still fine and still unlocks.
        assert!(Keystore::load(&path)
            .unwrap()
            .unlock(b"correct horse")
            .is_ok());
    }

    /// An edited keystore (checksum recomputed) asking argon2 for 4 TiB and 2^32 − 1
    /// passes is refused with a reason, instead of aborting on allocation or running for days.
    #[test]
    fn absurd_key_derivation_costs_are_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let keystore = create(dir.path());
        for (memory_kib, iterations) in [(u32::MAX, 1), (64, u32::MAX)] {
            let file = KeystoreFile {
                kdf: KdfParams {
                    memory_kib,
                    iterations,
                    ..keystore.file.kdf.clone()
                },
                ..keystore.file.clone()
            }
            .with_checksum();
            let path = dir.path().join("edited.json");
            std::fs::write(&path, file.canonical()).unwrap();
            let edited = Keystore::load(&path).expect("well-formed");
            match edited.unlock(b"correct horse") {
                Err(KeystoreError::Corrupt { reason, .. }) => {
                    assert!(reason.contains("exceed"), "{reason}")
                }
                other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn an_unknown_version_is_named() {
        let dir = tempfile::TempDir::new().unwrap();
        create(dir.path());
        let path = Keystore::path_in(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"version\": 1,", "\"version\": 2,")).unwrap();
        let error = Keystore::load(&path).err().unwrap();
        assert!(
            matches!(error, KeystoreError::UnsupportedVersion { found: 2, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("version 2"));
    }

    #[test]
    fn an_interrupted_write_leaves_the_previous_keystore() {
        let dir = tempfile::TempDir::new().unwrap();
        create(dir.path());
        let path = Keystore::path_in(dir.path());
        let before = std::fs::read(&path).unwrap();
        // The write dies halfway (as the process would if killed), after half the bytes.
        let result = write_atomically(&path, |out| {
            out.write_all(&before[..before.len() / 2])?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(Keystore::load(&path).is_ok());
        // A temporary file left by a killed process does not matter either.
        std::fs::write(dir.path().join("wallet.json.tmp"), b"{\"vers").unwrap();
        assert!(Keystore::load(&path)
            .unwrap()
            .unlock(b"correct horse")
            .is_ok());
    }

    #[test]
    fn mnemonics_are_checked_and_normalised() {
        assert!(parse_mnemonic("abandon abandon").is_err());
        let typed = "  Abandon abandon ABANDON abandon abandon abandon abandon abandon abandon abandon abandon   about\n";
        assert_eq!(*parse_mnemonic(typed).unwrap(), ABOUT);
        let fresh = generate_mnemonic();
        assert_eq!(fresh.split(' ').count(), 24);
        assert!(parse_mnemonic(&fresh).is_ok());
    }
}
