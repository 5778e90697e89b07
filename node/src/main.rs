//! `apiary-node`: the full node binary. Reads flags and the config file, opens the store,
//! and runs the network, the RPC server (and the metrics server, if asked) and, with
//! --mine, the miner, until SIGINT or SIGTERM.

use anyhow::{anyhow, Context, Result};
use apiary_core::{Address, ChainSpec};
use apiary_files::write_private_file;
use apiary_node::cache::CacheBudget;
use apiary_node::chain::Chain;
use apiary_node::mempool::MempoolConfig;
use apiary_node::p2p::{self, NetworkConfig};
use apiary_node::rpc::{router, write_cookie, RpcContext};
use apiary_node::store::Store;
use apiary_node::{reindex, Node};
use libp2p::Multiaddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Threads of the async runtime (network, RPC, subscriptions). Two: its tasks only wait
/// and route; the work of a node (checks, blocks, templates) runs on rayon's pool and on
/// blocking threads, which must keep the cores.
const RUNTIME_THREADS: usize = 2;

/// The state tree copies and frees pages of about 2 KiB by the thousand per block: glibc
/// serves those sizes from its slow bins (a fifth of block connection went there), mimalloc
/// from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_RPC_ADDR: &str = "127.0.0.1:9797";
const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/9798";

#[derive(clap::Parser)]
#[command(
    name = "apiary-node",
    version,
    about = "Apiary full node: keeps the whole ledger, checks every block, mines on request",
    long_about = "Apiary full node. With no flags it runs the built-in devnet, keeps its data in \
                  ~/.apiary/<chain id>, and answers JSON-RPC on 127.0.0.1:9797 with cookie auth \
                  (credentials in <datadir>/rpc.cookie). Every flag can also be set in <datadir>/apiary.toml \
                  (--print-config shows how). Logs go to stderr or --log-file; RUST_LOG filters them. \
                  Exit status: 1 a refusal to start (bad config file, damaged store), 2 bad flags or a \
                  fatal fault while running (a supervisor should restart)."
)]
struct Args {
    /// Config file (TOML, a key for every flag; flags win over it)
    /// [default: <datadir>/apiary.toml when it exists]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective config (defaults, the file, then flags) as TOML and exit
    #[arg(long)]
    print_config: bool,
    /// Write the log to this file (appended) instead of stderr
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Log as text for people or as JSON lines for log collectors
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
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
    #[arg(long, value_name = "MULTIADDR", default_value = DEFAULT_LISTEN, value_parser = listen_addr)]
    listen: Vec<Multiaddr>,
    /// A peer to connect to and keep reconnecting to, e.g.
    /// /ip4/127.0.0.1/tcp/9798/p2p/12D3KooW…; repeat for several
    #[arg(long = "peer", value_name = "MULTIADDR", value_parser = peer_addr)]
    peers: Vec<Multiaddr>,
    /// Find peers of the same chain on the local network by multicast DNS (not loopback:
    /// listen on a LAN address or 0.0.0.0)
    #[arg(long)]
    mdns: bool,
    /// Peer connections at most
    #[arg(long, value_name = "N", default_value_t = p2p::PeerLimits::default().max_peers,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_peers: u32,
    /// Inbound peer connections (pending or established) from one IP address at most
    #[arg(long, value_name = "N", default_value_t = p2p::PeerLimits::default().max_peers_per_ip,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_peers_per_ip: u32,
    /// Peer connections still in their handshakes, each way, at most
    #[arg(long, value_name = "N", default_value_t = p2p::PeerLimits::default().max_pending,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_pending_connections: u32,
    /// Requests of one peer answered at once, at most (more cost it)
    #[arg(long, value_name = "N", default_value_t = p2p::PeerLimits::default().max_requests_per_peer as u32,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    max_requests_per_peer: u32,
    /// Seconds a peer connection's handshakes (noise, yamux) may take
    #[arg(long, value_name = "SECONDS", default_value_t = p2p::PeerLimits::default().handshake_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=300))]
    handshake_timeout_secs: u64,
    /// Mine blocks continuously (needs --miner-address)
    #[arg(long, requires = "miner_address")]
    mine: bool,
    /// Address paid by blocks this node mines (also dev_mine's default)
    #[arg(long, value_name = "ADDR")]
    miner_address: Option<String>,
    /// Mine each block no sooner than this many milliseconds after the tip's timestamp
    /// (e.g. the chain's block time): the difficulty settles at the chain's floor and an
    /// idle development chain costs next to no CPU. 0: mine at full speed
    #[arg(long, value_name = "MS", default_value_t = 0)]
    mine_interval_ms: u64,
    /// Threads searching nonces, 1 to 1024 [default: all cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    mine_threads: Option<u16>,
    /// Rebuild the store from the blocks it holds, re-checking each one (also recovers a
    /// damaged store: what cannot be read comes from peers)
    #[arg(long, conflicts_with = "resync")]
    reindex: bool,
    /// Set the store aside (kept as db.set-aside-<time>) and download the chain from peers
    #[arg(long)]
    resync: bool,
    /// Let web pages from this origin (e.g. http://localhost:3000) call the RPC from a
    /// browser; they still need the cookie. '*' allows any origin
    #[arg(long, value_name = "ORIGIN", value_parser = cors_origin)]
    rpc_cors: Option<axum::http::HeaderValue>,
    /// Also serve /metrics (Prometheus), /healthy and /ready, without a cookie, on this
    /// address (they are always on the RPC port too); e.g. 0.0.0.0:9799 for a Prometheus
    /// on another machine without opening RPC to it. Port 0 picks one, written to
    /// <datadir>/metrics.addr
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Most RPC connections at once, 1 to 65535 [default: a quarter of the open-file limit,
    /// at most 256]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    rpc_max_connections: Option<u16>,
    /// Memory for the ledger, in MiB: RocksDB's block cache and memtables, the cache of
    /// state pages, and account changes held until they are written (a flush starts when
    /// they outgrow their share). The node's memory stays near this plus a fixed overhead,
    /// whatever the number of accounts
    #[arg(long, value_name = "MIB", default_value_t = CacheBudget::DEFAULT_MIB,
          value_parser = clap::value_parser!(u32).range(i64::from(CacheBudget::MIN_MIB)..=1 << 20))]
    cache_mb: u32,
    /// Do not serve the block explorer and testnet dashboard (/explorer on the RPC port:
    /// public chain data, read without the cookie)
    #[arg(long)]
    no_explorer: bool,
}

fn cors_origin(text: &str) -> Result<axum::http::HeaderValue, String> {
    let valid = text == "*" || text.starts_with("http://") || text.starts_with("https://");
    if !valid || text.ends_with('/') {
        return Err(
            "an origin is scheme://host[:port] with no path, e.g. http://localhost:3000, or '*'"
                .into(),
        );
    }
    axum::http::HeaderValue::from_str(text).map_err(|e| e.to_string())
}

fn listen_addr(text: &str) -> Result<Multiaddr, String> {
    text.parse().map_err(|e| {
        format!("{e}: a libp2p multiaddr, e.g. /ip4/0.0.0.0/tcp/9798 (all interfaces, port 9798)")
    })
}

fn peer_addr(text: &str) -> Result<Multiaddr, String> {
    let addr: Multiaddr = text
        .parse()
        .map_err(|e| format!("{e}: a libp2p multiaddr, e.g. /ip4/192.0.2.7/tcp/9798/p2p/12D3KooW… or /dns4/node-1/tcp/9798/p2p/12D3KooW… (the peer's p2p.addr)"))?;
    p2p::check_dialable(&addr)?;
    Ok(addr)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    apiary_cmdline::serve_docs(<Args as clap::CommandFactory>::command);
    apiary_node::rpc::server::raise_fd_limit();
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            // 1, like every refusal a restart cannot mend (2 is a fatal fault at run time).
            apiary_cmdline::say!("error: {}", apiary_cmdline::error_line(&error));
            std::process::exit(1);
        }
    };
    if let Err(error) = init_logging(&args) {
        apiary_cmdline::say!("error: {}", apiary_cmdline::error_line(&error));
        std::process::exit(1);
    }
    // A panic is a bug: say where, in the log, whichever thread it was on. The task it
    // ended reports to the node's health, which stops the node.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), "panic: {info}");
    }));
    let logs_to_file = args.log_file.is_some();
    if let Err(error) = run(args) {
        // Once on stderr; in the log file too when there is one.
        if logs_to_file {
            tracing::error!("{}", apiary_cmdline::error_line(&error));
        }
        apiary_cmdline::say!("error: {}", apiary_cmdline::error_line(&error));
        std::process::exit(1);
    }
}

/// The flags, over the config file (--config, or <datadir>/apiary.toml when present), over
/// the defaults. `--print-config` prints the outcome and exits.
fn parse_args() -> Result<Args> {
    use clap::{CommandFactory, FromArgMatches};
    let command = Args::command();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Read leniently, only to find the file: what a flag requires may be in the file
    // (`--mine` here, `miner-address` there).
    let given = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .ok();
    let path_of = |id: &str| {
        given
            .as_ref()
            .and_then(|m| m.try_get_one::<PathBuf>(id).ok().flatten().cloned())
    };
    let file = match path_of("config") {
        Some(path) => Some(path),
        None => {
            let datadir = match path_of("datadir") {
                Some(dir) => dir,
                None => default_datadir(&match path_of("genesis") {
                    Some(path) => apiary_genesis::load_spec(&path)?,
                    None => apiary_genesis::devnet(),
                })?,
            };
            Some(datadir.join("apiary.toml")).filter(|p| p.exists())
        }
    };
    let mut all = vec![argv[0].clone()];
    if let (Some(file), Some(given)) = (&file, &given) {
        all.extend(apiary_node::config::file_args(&command, file, given)?);
    }
    all.extend(argv.into_iter().skip(1));
    let matches = match (command.clone().try_get_matches_from(all), &file) {
        (Ok(matches), _) => matches,
        (Err(e), Some(file)) if e.use_stderr() => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            return Err(anyhow!(
                "with config file {}: {}",
                file.display(),
                first.trim_start_matches("error: ")
            ));
        }
        // Help, version, or a mistake in the flags alone: clap says it and exits.
        (Err(e), _) => e.exit(),
    };
    finish(&command, &matches, Args::from_arg_matches(&matches)?)
}

fn finish(command: &clap::Command, matches: &clap::ArgMatches, args: Args) -> Result<Args> {
    if args.print_config {
        apiary_cmdline::write_stdout_or_exit(
            apiary_node::config::render(command, matches).as_bytes(),
        );
        std::process::exit(0);
    }
    Ok(args)
}

fn init_logging(args: &Args) -> Result<()> {
    // Gossipsub logs every message it drops itself at WARN: one flooding peer would fill the
    // log (its scoring, and then a ban, make the peer pay instead). Kad warns "Failed to
    // trigger bootstrap: No known peers" whenever a listen address comes up before any peer
    // is known, as at every start (its automatic bootstrap cannot be turned off). Both stay
    // at ERROR under any RUST_LOG that does not name them.
    let wanted = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&wanted)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if wanted.trim().is_empty() {
        filter = tracing_subscriber::EnvFilter::new("info");
    }
    for target in ["libp2p_gossipsub", "libp2p_kad"] {
        if !wanted.contains(target) {
            filter = filter.add_directive(format!("{target}=error").parse()?);
        }
    }
    // A line that cannot be written (nobody reads stderr any more, a full disk) is dropped:
    // the subscriber's own report of it would go through `eprintln!`, which panics on a
    // closed pipe, and a panic logged to the same pipe aborts the node.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    match (&args.log_file, args.log_format) {
        (Some(path), format) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            let writer = std::sync::Mutex::new(file);
            match format {
                LogFormat::Json => builder.json().with_writer(writer).init(),
                LogFormat::Text => builder.with_ansi(false).with_writer(writer).init(),
            }
        }
        (None, LogFormat::Json) => builder.json().with_writer(std::io::stderr).init(),
        (None, LogFormat::Text) => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
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
    let mine_threads = args.mine_threads.map(usize::from).unwrap_or_else(|| {
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
    // Held until the process ends: one node per data dir, even while no store is open yet.
    let _datadir_lock = lock_datadir(&datadir)?;

    let genesis_hash = spec.genesis_hash();
    tracing::info!(chain = %spec.chain_id, genesis = %genesis_hash, datadir = %datadir.display(), "starting");
    let db = datadir.join("db");
    let spec = Arc::new(spec);
    let budget = CacheBudget::mib(args.cache_mb);
    reindex::finish_interrupted(&db)?;
    if args.resync {
        if let Some(aside) = reindex::resync(&db)? {
            tracing::warn!(kept = %aside.display(), "the store was set aside; the chain is downloaded from peers (delete the old store once the node has caught up)");
        }
    }
    if args.reindex {
        tracing::info!("reindexing: every stored block is checked and connected again");
        if let Some(rebuilt) = reindex::reindex(&db, spec.clone(), &budget)? {
            match &rebuilt.stopped {
                Some(why) => {
                    tracing::warn!(height = rebuilt.height.0, %why, "reindexed up to the first block the old store could not give; the rest comes from peers")
                }
                None => tracing::info!(height = rebuilt.height.0, "reindexed every stored block"),
            }
            if let Some(kept) = &rebuilt.kept {
                tracing::warn!(kept = %kept.display(), "the damaged store was kept; delete it once the node runs well");
            }
        }
    }
    let store = Store::open_tuned(&db, genesis_hash, budget.store_tuning())?;
    let chain = Chain::open_with_budget(store, spec, &budget)?;
    tracing::info!(height = chain.height().0, tip = %chain.tip(), "chain loaded");
    let node = Node::new(chain, MempoolConfig::default());
    let restored = node
        .restore_mempool(&datadir.join("mempool.log"))
        .context("cannot read the mempool log")?;
    if restored.restored + restored.dropped > 0 {
        tracing::info!(
            restored = restored.restored,
            dropped = restored.dropped,
            "mempool restored from its log"
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()?;
    let network = NetworkConfig {
        listen: args.listen.clone(),
        bootnodes: args.peers.clone(),
        datadir: datadir.clone(),
        mdns: args.mdns,
        limits: p2p::PeerLimits {
            max_peers: args.max_peers,
            max_peers_per_ip: args.max_peers_per_ip,
            max_pending: args.max_pending_connections,
            max_requests_per_peer: args.max_requests_per_peer as usize,
            handshake_timeout: std::time::Duration::from_secs(args.handshake_timeout_secs),
        },
    };
    let settings = Settings {
        rpc_addr: args.rpc_addr.clone(),
        rpc_cors: args.rpc_cors.clone(),
        explorer: !args.no_explorer,
        metrics_addr: args.metrics_addr.clone(),
        rpc_max_connections: args
            .rpc_max_connections
            .map(usize::from)
            .unwrap_or_else(apiary_node::rpc::server::default_max_connections),
        miner_address,
        mine: args.mine,
        mine_interval: (args.mine_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(args.mine_interval_ms)),
        mine_threads,
    };
    let result = runtime.block_on(serve(node.clone(), &datadir, network, settings));
    let remove_ready_files = || {
        let _ = std::fs::remove_file(datadir.join("rpc.cookie"));
        let _ = std::fs::remove_file(datadir.join("rpc.addr"));
        let _ = std::fs::remove_file(datadir.join("metrics.addr"));
    };
    if let Some(reason) = node.health().fatal_reason() {
        // Stop at once, not half-alive: other threads may still hold the store, so no
        // destructors run (what was acknowledged is on disk already, as after kill -9).
        remove_ready_files();
        apiary_cmdline::say!("error: {reason}");
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(2) };
    }
    node.shutdown();
    remove_ready_files();
    result
}

/// Takes `<datadir>/LOCK` for the life of the process (flock: released by the kernel when
/// the process ends, however it ends).
fn lock_datadir(datadir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = datadir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(anyhow!(
            "data dir {} is in use by another apiary-node",
            datadir.display()
        ));
    }
    Ok(file)
}

struct Settings {
    rpc_addr: String,
    rpc_cors: Option<axum::http::HeaderValue>,
    explorer: bool,
    metrics_addr: Option<String>,
    rpc_max_connections: usize,
    miner_address: Option<Address>,
    mine: bool,
    mine_interval: Option<std::time::Duration>,
    mine_threads: usize,
}

/// Runs the node's services until a stop signal (Ok) or a fatal fault (the node's health
/// says why; the caller exits non-zero).
async fn serve(
    node: Arc<Node>,
    datadir: &std::path::Path,
    network: NetworkConfig,
    settings: Settings,
) -> Result<()> {
    let rpc_addr = &settings.rpc_addr;
    let listener = tokio::net::TcpListener::bind(rpc_addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!(
            "RPC address {rpc_addr} is already in use (another apiary-node?); choose another with --rpc-addr"
        ),
        _ => anyhow!("cannot listen for RPC on {rpc_addr}: {e}"),
    })?;
    let metrics_listener = match &settings.metrics_addr {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow!("cannot serve metrics on {addr}: {e}; choose another with --metrics-addr")
        })?),
        None => None,
    };
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(addr = %bound, "RPC listens beyond this machine: its cookie travels in clear text (HTTP Basic auth); put TLS or an SSH tunnel in front, or keep --rpc-addr on 127.0.0.1");
    }
    // Listening for SIGINT/SIGTERM starts before the node says it is ready (the cookie),
    // so a stop that comes right after is still a clean one.
    let stop_requested = shutdown_signal()?;
    let network = p2p::start(node.clone(), network)?;
    tracing::info!(peer_id = %network.peer_id, "p2p started");
    // Scripts that asked for port 0 read the real address here; the cookie comes last,
    // so its presence means the node is ready.
    write_private_file(&datadir.join("rpc.addr"), bound.to_string().as_bytes())
        .context("cannot write rpc.addr")?;
    if let Some(metrics_listener) = &metrics_listener {
        write_private_file(
            &datadir.join("metrics.addr"),
            metrics_listener.local_addr()?.to_string().as_bytes(),
        )
        .context("cannot write metrics.addr")?;
    }
    let (cookie_path, credentials) =
        write_cookie(datadir).context("cannot write the RPC cookie")?;
    tracing::info!(addr = %bound, cookie = %cookie_path.display(), max_connections = settings.rpc_max_connections, "JSON-RPC listening");

    let miner = match (settings.mine, settings.miner_address) {
        (true, Some(address)) => {
            tracing::info!(
                threads = settings.mine_threads,
                interval_ms = settings.mine_interval.map(|d| d.as_millis() as u64),
                "mining"
            );
            Some(
                apiary_node::miner::spawn_miner(
                    node.clone(),
                    address,
                    settings.mine_threads,
                    settings.mine_interval,
                )
                .context("cannot start the miner")?,
            )
        }
        _ => None,
    };
    let context = Arc::new(RpcContext {
        node: node.clone(),
        credentials,
        miner_address: settings.miner_address,
        mine_threads: settings.mine_threads,
        network: Some(network),
        templates: Default::default(),
    });
    let mut metrics_server = None;
    if let Some(metrics_listener) = metrics_listener {
        let metrics_bound = metrics_listener.local_addr()?;
        tracing::info!(addr = %metrics_bound, "metrics and probes listening");
        // Runs until the node stops; ending before that (a panic) stops the node, so that
        // a probe never goes silent while the node keeps running.
        metrics_server = Some(tokio::spawn(apiary_node::rpc::server::serve(
            metrics_listener,
            apiary_node::rpc::probes::router(context.clone()),
            16,
            std::future::pending(),
        )));
    }
    let metrics_ended = async move {
        match metrics_server {
            Some(server) => {
                let _ = server.await;
            }
            None => std::future::pending().await,
        }
    };
    let shutdown_node = node.clone();
    let mut routes = router(context.clone());
    if let Some(origin) = settings.rpc_cors {
        routes = apiary_node::rpc::with_cors(routes, origin);
    }
    if settings.explorer {
        routes = routes.merge(apiary_node::rpc::explorer::routes(context));
    }
    let server = apiary_node::rpc::server::serve(
        listener,
        routes,
        settings.rpc_max_connections,
        async move {
            stop_requested.await;
            tracing::info!("shutting down");
            shutdown_node.request_shutdown();
        },
    );
    tokio::select! {
        () = server => {}
        _ = node.health().failed() => return Ok(()),
        () = watch_storage(node.clone()) => {}
        () = metrics_ended => {
            node.health().fail("the metrics and probes server (--metrics-addr) stopped");
            return Ok(());
        }
    }
    if let Some(miner) = miner {
        let _ = tokio::task::spawn_blocking(move || miner.join()).await;
    }
    Ok(())
}

/// While the disk is full, looks every second whether the store takes writes again.
async fn watch_storage(node: Arc<Node>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if node.health().storage_full().is_some() {
            let node = node.clone();
            let _ = tokio::task::spawn_blocking(move || node.check_storage()).await;
        }
    }
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
