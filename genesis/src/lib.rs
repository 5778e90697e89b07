//! Chain spec files: TOML for people, checked with line numbers, converted to and from
//! the core's `ChainSpec`; and the built-in devnet every node can run with no arguments.

use apiary_core::pow::Target;
use apiary_core::spec::{ChainId, ConsensusParams, SpecError};
use apiary_core::{Address, AddressPrefix, Amount, ChainSpec};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The devnet's funded accounts, account 0 of each of these PUBLIC mnemonics.
pub const DEVNET_MNEMONICS: [&str; 3] = [
    "absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice comic",
    "acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount exchange",
    "adapt blossom school alcohol coral light army gather adapt blossom school alcohol coral light army gather adapt blossom school alcohol coral light army hold",
];

pub const DEVNET_TOML: &str = include_str!("../specs/devnet.toml");

/// The built-in development chain.
pub fn devnet() -> ChainSpec {
    parse_spec(DEVNET_TOML).expect("the embedded devnet spec is valid (tested)")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct SpecFileError {
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadSpecError {
    #[error("cannot read chain spec {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("chain spec {path}, {source}")]
    Invalid { path: String, source: SpecFileError },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    chain_id: Spanned<String>,
    address_prefix: Spanned<String>,
    genesis_timestamp_ms: u64,
    consensus: Spanned<ConsensusFile>,
    #[serde(default)]
    alloc: Vec<AllocFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsensusFile {
    target_block_time_ms: u64,
    asert_half_life_ms: u64,
    /// Easiest allowed target, 64 hex digits.
    pow_limit: Spanned<String>,
    /// Target of block 1, 64 hex digits.
    genesis_target: Spanned<String>,
    max_block_bytes: u32,
    max_block_txs: u32,
    max_future_drift_ms: u64,
    median_time_span: u32,
    /// Coins paid to the miner of each block before halvings.
    initial_reward: Spanned<String>,
    halving_interval: u64,
    max_reorg_depth: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocFile {
    address: Spanned<String>,
    coins: Spanned<String>,
}

/// Parses and checks a chain spec, naming the line of whatever is wrong.
pub fn parse_spec(text: &str) -> Result<ChainSpec, SpecFileError> {
    let line_of =
        |span: Range<usize>| Some(text[..span.start.min(text.len())].matches('\n').count() + 1);
    let at = |span: Range<usize>, message: String| SpecFileError {
        line: line_of(span),
        message,
    };
    let file: SpecFile = toml::from_str(text).map_err(|e| SpecFileError {
        line: e.span().and_then(line_of),
        message: e.message().to_string(),
    })?;

    let chain_id = ChainId::new(file.chain_id.get_ref())
        .map_err(|e| at(file.chain_id.span(), e.to_string()))?;
    let address_prefix = AddressPrefix::new(file.address_prefix.get_ref())
        .map_err(|e| at(file.address_prefix.span(), e.to_string()))?;
    let c = file.consensus.get_ref();
    let target = |field: &Spanned<String>, name: &str| {
        Target::from_hex(field.get_ref())
            .map(|t| t.to_compact())
            .map_err(|e| at(field.span(), format!("{name}: {e}")))
    };
    let coins = |field: &Spanned<String>, name: &str| {
        Amount::parse_coins(field.get_ref()).map_err(|e| at(field.span(), format!("{name}: {e}")))
    };
    let consensus = ConsensusParams {
        target_block_time_ms: c.target_block_time_ms,
        asert_half_life_ms: c.asert_half_life_ms,
        pow_limit: target(&c.pow_limit, "pow_limit")?,
        genesis_bits: target(&c.genesis_target, "genesis_target")?,
        max_block_bytes: c.max_block_bytes,
        max_block_txs: c.max_block_txs,
        max_future_drift_ms: c.max_future_drift_ms,
        median_time_span: c.median_time_span,
        initial_reward: coins(&c.initial_reward, "initial_reward")?,
        halving_interval: c.halving_interval,
        max_reorg_depth: c.max_reorg_depth,
    };
    let mut allocations = Vec::with_capacity(file.alloc.len());
    for alloc in &file.alloc {
        let address = Address::parse(alloc.address.get_ref(), &address_prefix)
            .map_err(|e| at(alloc.address.span(), e.to_string()))?;
        allocations.push((address, coins(&alloc.coins, "coins")?));
    }
    let spec = ChainSpec {
        chain_id,
        address_prefix,
        genesis_timestamp_ms: apiary_core::TimestampMs(file.genesis_timestamp_ms),
        consensus,
        allocations,
    };
    spec.validate().map_err(|e| {
        let span = match &e {
            SpecError::DuplicateAllocation(_) | SpecError::AllocationOverflow => {
                file.alloc.last().map(|a| a.address.span())
            }
            _ => Some(file.consensus.span()),
        };
        SpecFileError {
            line: span.and_then(line_of),
            message: e.to_string(),
        }
    })?;
    Ok(spec)
}

pub fn load_spec(path: &Path) -> Result<ChainSpec, LoadSpecError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadSpecError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_spec(&text).map_err(|source| LoadSpecError::Invalid {
        path: shown,
        source,
    })
}

/// The TOML text of a spec; `parse_spec` of it gives the same spec back.
pub fn spec_to_toml(spec: &ChainSpec) -> String {
    let c = &spec.consensus;
    let hex = |bits: apiary_core::CompactTarget| bits.to_target().expect("valid spec").to_hex();
    let file = SpecFile {
        chain_id: Spanned::new(0..0, spec.chain_id.to_string()),
        address_prefix: Spanned::new(0..0, spec.address_prefix.as_str().to_string()),
        genesis_timestamp_ms: spec.genesis_timestamp_ms.0,
        consensus: Spanned::new(
            0..0,
            ConsensusFile {
                target_block_time_ms: c.target_block_time_ms,
                asert_half_life_ms: c.asert_half_life_ms,
                pow_limit: Spanned::new(0..0, hex(c.pow_limit)),
                genesis_target: Spanned::new(0..0, hex(c.genesis_bits)),
                max_block_bytes: c.max_block_bytes,
                max_block_txs: c.max_block_txs,
                max_future_drift_ms: c.max_future_drift_ms,
                median_time_span: c.median_time_span,
                initial_reward: Spanned::new(0..0, c.initial_reward.to_string()),
                halving_interval: c.halving_interval,
                max_reorg_depth: c.max_reorg_depth,
            },
        ),
        alloc: spec
            .allocations
            .iter()
            .map(|(address, amount)| AllocFile {
                address: Spanned::new(0..0, address.to_text(&spec.address_prefix)),
                coins: Spanned::new(0..0, amount.to_string()),
            })
            .collect(),
    };
    toml::to_string_pretty(&file).expect("a spec always serialises")
}

/// Parameters of `apiary-genesis new`, each with a default.
#[derive(Debug, Clone)]
pub struct NewSpec {
    pub chain_id: ChainId,
    pub address_prefix: AddressPrefix,
    pub genesis_timestamp_ms: u64,
    pub target_block_time_ms: u64,
    /// 0: twenty block times.
    pub asert_half_life_ms: u64,
    /// Expected hashes to find block 1.
    pub initial_hashes: u64,
    /// Expected hashes of the easiest allowed block.
    pub min_hashes: u64,
    pub max_block_bytes: u32,
    pub max_block_txs: u32,
    pub max_future_drift_ms: u64,
    pub initial_reward: Amount,
    pub halving_interval: u64,
    pub max_reorg_depth: u64,
    pub allocations: Vec<(Address, Amount)>,
}

impl NewSpec {
    pub fn build(self) -> Result<ChainSpec, SpecError> {
        let half_life = if self.asert_half_life_ms == 0 {
            20 * self.target_block_time_ms
        } else {
            self.asert_half_life_ms
        };
        let pow_limit = Target::for_expected_hashes(self.min_hashes).to_compact();
        let genesis =
            Target::for_expected_hashes(self.initial_hashes.max(self.min_hashes)).to_compact();
        let spec = ChainSpec {
            chain_id: self.chain_id,
            address_prefix: self.address_prefix,
            genesis_timestamp_ms: apiary_core::TimestampMs(self.genesis_timestamp_ms),
            consensus: ConsensusParams {
                target_block_time_ms: self.target_block_time_ms,
                asert_half_life_ms: half_life,
                pow_limit,
                genesis_bits: genesis,
                max_block_bytes: self.max_block_bytes,
                max_block_txs: self.max_block_txs,
                max_future_drift_ms: self.max_future_drift_ms,
                median_time_span: 11,
                initial_reward: self.initial_reward,
                halving_interval: self.halving_interval,
                max_reorg_depth: self.max_reorg_depth,
            },
            allocations: self.allocations,
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_core::hd;

    #[test]
    fn devnet_accounts_come_from_the_published_mnemonics() {
        let spec = devnet();
        assert_eq!(spec.allocations.len(), DEVNET_MNEMONICS.len());
        for (phrase, (address, _)) in DEVNET_MNEMONICS.iter().zip(&spec.allocations) {
            let seed = hd::seed_from_mnemonic(phrase, "").unwrap();
            assert_eq!(hd::address_of(&hd::account_key(&seed, 0)), *address);
        }
    }

    #[test]
    fn toml_round_trips() {
        let spec = devnet();
        assert_eq!(parse_spec(&spec_to_toml(&spec)).unwrap(), spec);
    }

    fn error_of(text: &str) -> SpecFileError {
        parse_spec(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_line() {
        let bad_address = DEVNET_TOML.replace(
            "apdev1nye7zzkr5ghqjprzet75ccuw06pna4hrlg6mjhnmu4227r6cthmq2k0ee9",
            "apdev1nye7zzkr5ghqjprzet75ccuw06pna4hrlg6mjhnmu4227r6cthmq2k0ee8",
        );
        let e = error_of(&bad_address);
        assert_eq!(
            e.line,
            Some(
                DEVNET_TOML
                    .lines()
                    .position(|l| l.contains("apdev1nye7"))
                    .unwrap()
                    + 1
            )
        );
        assert!(e.message.contains("bech32m"), "{e}");

        let typo = DEVNET_TOML.replace("max_block_txs", "max_blok_txs");
        let e = error_of(&typo);
        assert!(e.message.contains("max_blok_txs"), "{e}");
        assert!(e.line.is_some());

        let bad_target = DEVNET_TOML.replace("pow_limit = \"0000ffff", "pow_limit = \"zz00ffff");
        let e = error_of(&bad_target);
        assert!(e.message.starts_with("pow_limit"), "{e}");

        let not_toml = "chain_id = \"x\"\n[consensus\n";
        assert_eq!(error_of(not_toml).line, Some(2));

        let zero = DEVNET_TOML.replace("target_block_time_ms = 2000", "target_block_time_ms = 0");
        assert!(error_of(&zero)
            .message
            .contains("target_block_time_ms must be greater than zero"));
    }
}
