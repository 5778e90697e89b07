//! `apiary-node`: the full node binary. Parses flags, opens the store, and runs the RPC
//! server and (with --mine) the miner until SIGINT or SIGTERM.

use anyhow::{anyhow, Context, Result};
use apiary_core::{Address, ChainSpec};
use apiary_files::write_private_file;
use apiary_node::chain::Chain;
use apiary_node::mempool::MempoolConfig;
use apiary_node::p2p::{self, NetworkConfig};
use apiary_node::rpc::{router, write_cookie, RpcContext};
use apiary_node::store::Store;
use apiary_node::Node;
use clap::Parser;
use libp2p::Multiaddr;
use std::path::PathBuf;
use std::sync::Arc;

const DEFAULT_RPC_ADDR: &str = "127.0.0.1:9797";
const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/9798";

#[derive(Parser)]
#[command(
    name = "apiary-node",
    version,
    about = "Apiary full node: keeps the whole ledger, checks every block, mines on request",
    long_about = "Apiary full node. With no flags it runs the built-in devnet, keeps its data in \
                  ~/.apiary/<chain id>, and answers JSON-RPC on 127.0.0.1:9797 with cookie auth \
                  (credentials in <datadir>/rpc.cookie). Logs go to stderr; RUST_LOG filters them."
)]
struct Args {
    /// Data directory: the RocksDB store and rpc.cookie [default: ~/.apiary/<chain id>]
    #[arg(long, value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// Chain spec to run (see apiary-genesis) [default: the built-in devnet]
    #[arg(long, value_name = "SPEC.toml")]
    genesis: Option<PathBuf>,
    /// Where to answer JSON-RPC; keep it on loopback unless you know why not
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_RPC_ADDR)]
    rpc_addr: String,
    /// Where to accept peers (libp2p multiaddr); repeat for several
    #[arg(long, value_name = "MULTIADDR", default_value = DEFAULT_LISTEN)]
    listen: Vec<Multiaddr>,
    /// A peer to connect to and keep reconnecting to, e.g.
    /// /ip4/127.0.0.1/tcp/9798/p2p/12D3KooW…; repeat for several
    #[arg(long = "peer", value_name = "MULTIADDR")]
    peers: Vec<Multiaddr>,
    /// Find peers of the same chain on the local network by multicast DNS (not loopback:
    /// listen on a LAN address or 0.0.0.0)
    #[arg(long)]
    mdns: bool,
    /// Mine blocks continuously (needs --miner-address)
    #[arg(long, requires = "miner_address")]
    mine: bool,
    /// Address paid by blocks this node mines (also dev_mine's default)
    #[arg(long, value_name = "ADDR")]
    miner_address: Option<String>,
    /// Threads searching nonces [default: all cores]
    #[arg(long, value_name = "N")]
    mine_threads: Option<usize>,
    /// Rebuild accounts and indexes from the stored blocks, re-checking each block
    #[arg(long)]
    reindex: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(error) = run(Args::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn default_datadir(spec: &ChainSpec) -> Result<PathBuf> {
    let home =
        std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; give --datadir"))?;
    Ok(PathBuf::from(home)
        .join(".apiary")
        .join(spec.chain_id.as_str()))
}

fn run(args: Args) -> Result<()> {
    let spec = match &args.genesis {
        Some(path) => apiary_genesis::load_spec(path)?,
        None => apiary_genesis::devnet(),
    };
    let miner_address = args
        .miner_address
        .as_deref()
        .map(|text| Address::parse(text, &spec.address_prefix))
        .transpose()
        .context("--miner-address")?;
    let mine_threads = args.mine_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let datadir = match &args.datadir {
        Some(dir) => dir.clone(),
        None => default_datadir(&spec)?,
    };
    std::fs::create_dir_all(&datadir)
        .with_context(|| format!("cannot create data dir {}", datadir.display()))?;

    let genesis_hash = spec.genesis_hash();
    tracing::info!(chain = %spec.chain_id, genesis = %genesis_hash, datadir = %datadir.display(), "starting");
    let store = Store::open(&datadir.join("db"), genesis_hash)?;
    let spec = Arc::new(spec);
    let chain = if args.reindex {
        Chain::reindex(store, spec)?
    } else {
        Chain::open(store, spec)?
    };
    tracing::info!(height = chain.height().0, tip = %chain.tip(), accounts = chain.state().len(), "chain loaded");
    let node = Node::new(chain, MempoolConfig::default());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let network = NetworkConfig {
        listen: args.listen.clone(),
        bootnodes: args.peers.clone(),
        datadir: datadir.clone(),
        mdns: args.mdns,
    };
    let result = runtime.block_on(serve(
        node.clone(),
        &args.rpc_addr,
        &datadir,
        network,
        miner_address,
        args.mine,
        mine_threads,
    ));
    node.shutdown();
    let _ = std::fs::remove_file(datadir.join("rpc.cookie"));
    let _ = std::fs::remove_file(datadir.join("rpc.addr"));
    result
}

async fn serve(
    node: Arc<Node>,
    rpc_addr: &str,
    datadir: &std::path::Path,
    network: NetworkConfig,
    miner_address: Option<Address>,
    mine: bool,
    mine_threads: usize,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(rpc_addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!(
            "RPC address {rpc_addr} is already in use (another apiary-node?); choose another with --rpc-addr"
        ),
        _ => anyhow!("cannot listen for RPC on {rpc_addr}: {e}"),
    })?;
    // Listening for SIGINT/SIGTERM starts before the node says it is ready (the cookie),
    // so a stop that comes right after is still a clean one.
    let stop_requested = shutdown_signal()?;
    let network = p2p::start(node.clone(), network)?;
    tracing::info!(peer_id = %network.peer_id, "p2p started");
    let bound = listener.local_addr()?;
    // Scripts that asked for port 0 read the real address here; the cookie comes last,
    // so its presence means the node is ready.
    write_private_file(&datadir.join("rpc.addr"), bound.to_string().as_bytes())
        .context("cannot write rpc.addr")?;
    let (cookie_path, credentials) =
        write_cookie(datadir).context("cannot write the RPC cookie")?;
    tracing::info!(addr = %bound, cookie = %cookie_path.display(), "JSON-RPC listening");

    let miner = match (mine, miner_address) {
        (true, Some(address)) => {
            tracing::info!(threads = mine_threads, "mining");
            Some(apiary_node::miner::spawn_miner(
                node.clone(),
                address,
                mine_threads,
            ))
        }
        _ => None,
    };
    let context = Arc::new(RpcContext {
        node: node.clone(),
        credentials,
        miner_address,
        mine_threads,
        network: Some(network),
    });
    let shutdown_node = node.clone();
    axum::serve(listener, router(context))
        .with_graceful_shutdown(async move {
            stop_requested.await;
            tracing::info!("shutting down");
            shutdown_node.request_shutdown();
        })
        .await?;
    if let Some(miner) = miner {
        let _ = tokio::task::spawn_blocking(move || miner.join()).await;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM received from the moment this is called.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
