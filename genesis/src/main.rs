//! `apiary-genesis`: create, check and hash chain specs.

use anyhow::{bail, Context, Result};
use apiary_core::spec::ChainId;
use apiary_core::{Address, AddressPrefix, Amount};
use apiary_genesis::{load_spec, spec_to_toml, NewSpec};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "apiary-genesis",
    version,
    about = "Create, check and hash Apiary chain specs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new chain spec; every parameter not given has a sensible default.
    New(NewArgs),
    /// Print the genesis block hash of a spec.
    Hash { spec: PathBuf },
    /// Check a spec and say what is wrong, with the line.
    Check { spec: PathBuf },
    /// Print the built-in devnet spec.
    Devnet,
}

#[derive(clap::Args)]
struct NewArgs {
    /// Chain name: 1 to 32 of a-z, 0-9 and '-'
    #[arg(long)]
    chain_id: String,
    /// Address prefix (bech32m human-readable part)
    #[arg(long, default_value = "ap")]
    address_prefix: String,
    /// Initial balance, ADDRESS=COINS; repeat for more accounts (make an address with
    /// `apiary-wallet new --chain-id ID --address-prefix PREFIX`, then `apiary-wallet address`)
    #[arg(long = "alloc", value_name = "ADDR=COINS")]
    allocations: Vec<String>,
    /// Genesis timestamp in ms since the Unix epoch [default: now]
    #[arg(long, value_name = "MS")]
    genesis_time_ms: Option<u64>,
    /// Target time between blocks
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    block_time_ms: u64,
    /// ASERT half-life: how fast the difficulty follows the hash rate [default: 20 block
    /// times]
    #[arg(long, value_name = "MS")]
    half_life_ms: Option<u64>,
    /// Expected hashes to find block 1 (the default takes one core a few seconds)
    #[arg(long, value_name = "N", default_value_t = 1 << 24)]
    initial_hashes: u64,
    /// Expected hashes of the easiest block ever allowed (the proof-of-work limit)
    #[arg(long, value_name = "N", default_value_t = 1 << 16)]
    min_hashes: u64,
    /// Largest block, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 4_000_000)]
    max_block_bytes: u32,
    /// Most transactions in one block
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    max_block_txs: u32,
    /// How far ahead of a node's clock a block's timestamp may be
    #[arg(long, value_name = "MS", default_value_t = 15_000)]
    max_future_drift_ms: u64,
    /// Coins paid to each block's miner before halvings
    #[arg(long, value_name = "COINS", default_value = "50")]
    reward: String,
    /// Blocks between reward halvings (0: never)
    #[arg(long, value_name = "N", default_value_t = 210_000)]
    halving_interval: u64,
    /// Deepest reorganisation a node follows (deeper ones need an operator)
    #[arg(long, value_name = "BLOCKS", default_value_t = 1_000)]
    max_reorg_depth: u64,
    /// Where to write the spec (an existing file is kept unless --force)
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Replace the output file if it exists (its chain is a different chain afterwards)
    #[arg(long)]
    force: bool,
}

fn main() {
    apiary_cmdline::finish(run(apiary_cmdline::start()));
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::New(args) => new_spec(args),
        Command::Hash { spec } => {
            println!("{}", load_spec(&spec)?.genesis_hash());
            Ok(())
        }
        Command::Check { spec } => {
            let spec_value = load_spec(&spec)?;
            println!(
                "{}: ok (chain {}, genesis {}, {} allocations)",
                spec.display(),
                spec_value.chain_id,
                spec_value.genesis_hash(),
                spec_value.allocations.len()
            );
            Ok(())
        }
        Command::Devnet => {
            print!("{}", apiary_genesis::DEVNET_TOML);
            Ok(())
        }
    }
}

fn new_spec(args: NewArgs) -> Result<()> {
    let address_prefix = AddressPrefix::new(&args.address_prefix)?;
    let mut allocations = Vec::new();
    for entry in &args.allocations {
        let Some((address, coins)) = entry.split_once('=') else {
            bail!("--alloc {entry:?}: expected ADDRESS=COINS");
        };
        let address = Address::parse(address, &address_prefix).map_err(|e| {
            anyhow::anyhow!(
                "--alloc {entry:?}: {e}; this chain's addresses start with {prefix}1… (make one \
                 with `apiary-wallet new --chain-id {chain} --address-prefix {prefix}`, then \
                 `apiary-wallet address`), or give --address-prefix the prefix of yours",
                prefix = address_prefix.as_str(),
                chain = args.chain_id,
            )
        })?;
        let coins = Amount::parse_coins(coins).with_context(|| format!("--alloc {entry:?}"))?;
        allocations.push((address, coins));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let spec = NewSpec {
        chain_id: ChainId::new(&args.chain_id)?,
        address_prefix,
        genesis_timestamp_ms: args.genesis_time_ms.unwrap_or(now_ms),
        target_block_time_ms: args.block_time_ms,
        asert_half_life_ms: args.half_life_ms.unwrap_or(0),
        initial_hashes: args.initial_hashes,
        min_hashes: args.min_hashes,
        max_block_bytes: args.max_block_bytes,
        max_block_txs: args.max_block_txs,
        max_future_drift_ms: args.max_future_drift_ms,
        initial_reward: Amount::parse_coins(&args.reward).context("--reward")?,
        halving_interval: args.halving_interval,
        max_reorg_depth: args.max_reorg_depth,
        allocations,
    }
    .build()?;
    write_spec(&args.output, &spec_to_toml(&spec), args.force)?;
    println!("{}", spec.genesis_hash());
    Ok(())
}

/// Writes the spec, refusing to replace an existing file unless `force`: a spec names a
/// chain, and overwriting one silently would strand every node that runs it.
fn write_spec(path: &std::path::Path, text: &str, force: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} exists; it may be the spec of a running chain: choose another --output, or \
             add --force to replace it",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
