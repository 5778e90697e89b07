//! `apiary-pool`: a mining pool. Takes templates from its node (paying the pool's own
//! address), hands miners Stratum-style jobs with a per-miner share target, checks shares,
//! submits blocks, and pays miners for their share of the last N shares (PPLNS) with real
//! transactions from the pool's key once each block's reward is `--maturity` deep.

mod books;
mod payouts;
mod server;

use anyhow::{bail, Context, Result};
use apiary_client::{Client, Endpoint};
use apiary_core::{Address, AddressPrefix, SigningKey};
use apiary_miner::work::Work;
use books::Books;
use clap::Parser;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "apiary-pool",
    version,
    about = "A mining pool for Apiary: Stratum-style work for miners, PPLNS payouts",
    after_help = "Miners connect with `apiary-miner --pool HOST:PORT --address THEIR_ADDRESS`.\n\
        The pool's key is <datadir>/pool.key (keep it: blocks pay it); its books are \
        <datadir>/pool.json, and settled entries move to <datadir>/pool-history.jsonl."
)]
struct Args {
    /// The node's JSON-RPC URL; repeat for several, tried in order
    #[arg(long, value_name = "URL", required = true)]
    rpc: Vec<String>,
    /// The node's rpc.cookie; one per --rpc, or one for all
    #[arg(long, value_name = "FILE")]
    rpc_cookie: Vec<PathBuf>,
    /// Where miners connect (port 0 picks one, written to <datadir>/pool.addr)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3333")]
    listen: String,
    /// The pool's key, books and address file
    #[arg(long, value_name = "DIR")]
    datadir: PathBuf,
    /// The pool's cut of each block, 0 to 100
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=100))]
    fee_percent: u64,
    /// Shares a block's reward is split over (PPLNS: the last N)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    window: u64,
    /// Blocks deep a reward must be before it is paid out
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    maturity: u64,
    /// The share rate each miner's difficulty aims at, in seconds per share
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    share_seconds: f64,
    /// Settled blocks and confirmed payouts kept in pool.json; older ones move to
    /// <datadir>/pool-history.jsonl, so the books stay small however long the pool runs
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    keep_settled: u64,
    /// Hashes per share a new miner starts at (then follows its hashrate)
    #[arg(long, value_name = "N", default_value_t = 1 << 16, value_parser = clap::value_parser!(u64).range(1..))]
    start_difficulty: u64,
}

/// The (nonce, timestamp) pairs seen for a job.
type Seen = HashSet<(u64, u64)>;

/// The jobs handed out: the newest templates by id, and which is current.
#[derive(Default)]
struct Jobs {
    by_id: HashMap<String, (Arc<Work>, Seen)>,
    order: VecDeque<String>,
    current: Option<Arc<Work>>,
    /// When each job stopped being current.
    replaced: HashMap<String, std::time::Instant>,
}

pub struct Pool {
    endpoints: Vec<Endpoint>,
    pub prefix: AddressPrefix,
    pub address: Address,
    key: SigningKey,
    chain_id: apiary_core::spec::ChainId,
    books: Mutex<Books>,
    books_path: PathBuf,
    history_path: PathBuf,
    keep_settled: usize,
    generation: AtomicU64,
    dirty: tokio::sync::Notify,
    written: tokio::sync::watch::Sender<u64>,
    jobs: Mutex<Jobs>,
    pub jobs_sender: tokio::sync::broadcast::Sender<Arc<Work>>,
    fee_percent: u64,
    window: usize,
    maturity: u64,
    pub share_seconds: f64,
    pub start_difficulty: u64,
}

impl Pool {
    fn client(&self) -> Client {
        Client::new(self.endpoints.clone())
    }

    pub fn current_job(&self) -> Option<Arc<Work>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .clone()
    }

    /// Whether `work` is still the newest job.
    pub fn is_current(&self, work: &Work) -> bool {
        self.current_job()
            .is_some_and(|current| current.id == work.id)
    }

    pub fn job(&self, id: &str) -> Option<Arc<Work>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.by_id.get(id).map(|(work, _)| work.clone())
    }

    /// How long ago job `id` stopped being current (None: unknown, or still current).
    pub fn replaced_since(&self, id: &str) -> Option<Duration> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.replaced.get(id).map(|at| at.elapsed())
    }

    /// True the first time a (nonce, timestamp) is seen for a job, from anyone.
    pub fn first_sight(&self, job: &str, nonce: u64, timestamp_ms: u64) -> bool {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.by_id
            .get_mut(job)
            .is_some_and(|(_, seen)| seen.insert((nonce, timestamp_ms)))
    }

    fn new_job(&self, work: Work) {
        let work = Arc::new(work);
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.by_id
            .insert(work.id.clone(), (work.clone(), HashSet::new()));
        jobs.order.push_back(work.id.clone());
        while jobs.order.len() > 16 {
            if let Some(old) = jobs.order.pop_front() {
                jobs.by_id.remove(&old);
                jobs.replaced.remove(&old);
            }
        }
        if let Some(previous) = jobs.current.replace(work.clone()) {
            jobs.replaced
                .insert(previous.id.clone(), std::time::Instant::now());
        }
        drop(jobs);
        let _ = self.jobs_sender.send(work);
    }

    /// Counts a share in the books; returns the write generation that holds it.
    pub fn record_share(&self, miner: &str, weight: u64) -> u64 {
        self.books
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_share(miner, weight, self.window);
        self.mark_dirty()
    }

    fn mark_dirty(&self) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.dirty.notify_one();
        generation
    }

    /// Waits until the books as of `generation` are on disk; false if that takes too long.
    pub async fn persisted(&self, generation: u64) -> bool {
        let mut written = self.written.subscribe();
        tokio::time::timeout(
            Duration::from_secs(10),
            written.wait_for(|w| *w >= generation),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Submits a share that meets the block's target; a block the node takes is booked.
    pub async fn submit_block(self: &Arc<Pool>, work: &Arc<Work>, params: &Value) {
        let pool = self.clone();
        let (work, params) = (work.clone(), params.clone());
        let _ = tokio::task::spawn_blocking(move || {
            // The miner's share, as Stratum's positional params carry it.
            let submit = apiary_api::SubmitParams {
                id: Some(work.id.clone()),
                nonce: serde_json::from_value(params[2].clone()).ok(),
                timestamp_ms: params[3].as_u64(),
                block: None,
            };
            let reply = pool.client().ask::<apiary_api::MiningSubmit>(&submit);
            match reply {
                Ok(apiary_api::SubmitResult {
                    status: apiary_api::SubmitStatus::Accepted,
                    hash: Some(hash),
                    ..
                }) => {
                    let hash = hash.to_string();
                    apiary_cmdline::say!("block {} found at height {}", hash, work.height);
                    pool.books
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .block_found(work.height, hash, work.reward, pool.fee_percent);
                    pool.mark_dirty();
                }
                Ok(reply) => {
                    apiary_cmdline::say!(
                        "block at height {} not taken: {}",
                        work.height,
                        json!(reply)
                    )
                }
                Err(error) => {
                    apiary_cmdline::say!("block at height {} not submitted: {error}", work.height)
                }
            }
        })
        .await;
    }
}

fn main() {
    apiary_cmdline::serve_docs(<Args as clap::CommandFactory>::command);
    let args = Args::parse();
    if let Err(error) = run(args) {
        apiary_cmdline::say!("error: {}", apiary_cmdline::error_line(&error));
        std::process::exit(1);
    }
}

/// The pool's key from `<datadir>/pool.key`, made on first start.
fn pool_key(datadir: &std::path::Path) -> Result<SigningKey> {
    let path = datadir.join("pool.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{} is not 64 hex digits", path.display()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            apiary_files::write_private_file(&path, hex::encode(seed).as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}

fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.datadir)
        .with_context(|| format!("cannot create {}", args.datadir.display()))?;
    let endpoints = Endpoint::pair(&args.rpc, &args.rpc_cookie)?;
    let info = Client::new(endpoints.clone())
        .ask::<apiary_api::NodeInfo>(&apiary_api::NoParams {})
        .context("the pool needs its node")?;
    let prefix = AddressPrefix::new(&info.address_prefix)?;
    let chain_id = apiary_core::spec::ChainId::new(&info.chain_id)?;
    let key = pool_key(&args.datadir)?;
    let address = apiary_core::hd::address_of(&key);
    let books_path = books::path(&args.datadir);
    let books = Books::load(&books_path)?;
    let pool = Arc::new(Pool {
        endpoints,
        prefix: prefix.clone(),
        address,
        key,
        chain_id,
        books: Mutex::new(books),
        books_path,
        history_path: books::history_path(&args.datadir),
        keep_settled: args.keep_settled as usize,
        generation: AtomicU64::new(0),
        dirty: tokio::sync::Notify::new(),
        written: tokio::sync::watch::Sender::new(0),
        jobs: Mutex::new(Jobs::default()),
        jobs_sender: tokio::sync::broadcast::Sender::new(16),
        fee_percent: args.fee_percent,
        window: args.window as usize,
        maturity: args.maturity.max(1),
        share_seconds: args.share_seconds.max(1e-6),
        start_difficulty: args.start_difficulty,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    {
        let pool = pool.clone();
        apiary_miner::spawn_core("templates", move || {
            let board = apiary_miner::work::Board::default();
            let client = pool.client();
            let text = pool.address.to_text(&pool.prefix);
            apiary_miner::work::feed(&client, &text, &board, &|work, _| {
                pool.new_job(Work {
                    id: work.id.clone(),
                    height: work.height,
                    header: work.header.clone(),
                    target: work.target,
                    reward: work.reward,
                    many: false,
                })
            });
        })?;
    }
    {
        let (pool, handle) = (pool.clone(), runtime.handle().clone());
        apiary_miner::spawn_core("payouts", move || payouts::run(&pool, &handle))?;
    }
    runtime.block_on(async move {
        let writer = pool.clone();
        tokio::spawn(async move { write_books(writer).await });
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr()?;
        apiary_files::write_private_file(
            &args.datadir.join("pool.addr"),
            bound.to_string().as_bytes(),
        )?;
        apiary_cmdline::say!(
            "pool {} listening on {bound}; blocks pay {}",
            env!("CARGO_PKG_VERSION"),
            pool.address.to_text(&pool.prefix)
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    apiary_cmdline::say!("cannot accept a miner: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Jobs and answers are small writes that must not wait on each other.
            let _ = stream.set_nodelay(true);
            tokio::spawn(server::serve(pool.clone(), stream));
        }
    })
}

/// Writes the books whenever they change (several changes, one write), then says which
/// generation is on disk. A failed write stops the pool: it must not acknowledge shares
/// it cannot keep.
async fn write_books(pool: Arc<Pool>) {
    loop {
        pool.dirty.notified().await;
        let generation = pool.generation.load(Ordering::Acquire);
        let pool_for_write = pool.clone();
        let written = tokio::task::spawn_blocking(move || {
            let bytes = pool_for_write
                .books
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .to_bytes()?;
            Books::save(&bytes, &pool_for_write.books_path)
        })
        .await;
        match written {
            Ok(Ok(())) => {
                pool.written.send_replace(generation);
            }
            Ok(Err(error)) => {
                apiary_cmdline::say!(
                    "error: cannot write {}: {error}; stopping",
                    pool.books_path.display()
                );
                std::process::exit(2);
            }
            Err(_) => std::process::exit(2),
        }
    }
}
