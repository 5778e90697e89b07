//! `apiary-cli`: calls any method of a node's JSON-RPC, finding the node's address and
//! cookie in its data dir. `help` comes from the node itself (`rpc_methods`), so the list
//! never drifts from what the node serves.

mod params;

use anyhow::anyhow;
use apiary_client::{Client, ClientError, Endpoint};
use clap::Parser;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The devnet's data dir under $HOME, used when no node is named.
const DEVNET_DIR: &str = ".apiary/apiary-devnet";

#[derive(Parser)]
#[command(
    name = "apiary-cli",
    version,
    about = "Call an Apiary node's JSON-RPC",
    after_help = "Examples:\n  \
        apiary-cli help                       every method the node serves\n  \
        apiary-cli help block_get             one method's parameters\n  \
        apiary-cli chain_tip\n  \
        apiary-cli block_get height=5\n  \
        apiary-cli tx_get txid=3f2a… raw=true\n  \
        apiary-cli account_history '{\"address\": \"ap1…\", \"limit\": 10}'\n  \
        apiary-cli --datadir /tmp/apiary-testnet/node0 net_peers\n  \
        apiary-cli --wait --datadir ~/.apiary/mychain chain_tip   (a node just started)\n  \
        apiary-cli --probe ready              exit 0 when the node is ready (health checks)\n\n\
        Parameters: key=value, the value taken as JSON when it is a number, true, false, \
        null, an object or an array, else as a string (key='\"5\"' forces a string); or one \
        JSON object.\n\n\
        Exit status: 0 success; 1 the node answered with an error; 2 bad usage; 3 no node \
        answered."
)]
struct Args {
    /// The node's data dir: its rpc.addr and rpc.cookie are used [default: the devnet's,
    /// ~/.apiary/apiary-devnet; the image sets APIARY_DATADIR=/data]
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "rpc",
        env = "APIARY_DATADIR"
    )]
    datadir: Option<PathBuf>,
    /// The node's RPC URL instead (http://HOST:PORT; the scheme may be left out)
    #[arg(long, value_name = "URL")]
    rpc: Option<String>,
    /// The cookie file for --rpc
    #[arg(long, value_name = "FILE", requires = "rpc")]
    rpc_cookie: Option<PathBuf>,
    /// Compact JSON on one line, strings without quotes: for scripts
    #[arg(long)]
    raw: bool,
    /// Wait up to this many seconds for the node to answer (one just started, say), as
    /// bitcoin-cli's -rpcwait [default when given alone: 60]
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    wait: Option<u64>,
    /// Instead of a method, ask the node's /ready or /healthy (no cookie needed): exit 0
    /// when it says yes, 1 when it says no; for container and orchestrator health checks
    #[arg(long, value_enum, conflicts_with_all = ["method", "params"])]
    probe: Option<Probe>,
    /// The method to call; `help [METHOD]` lists them (`--completions bash|zsh|fish` prints
    /// a shell completion script, `--manpage` the man page)
    #[arg(value_name = "METHOD", required_unless_present = "probe")]
    method: Option<String>,
    /// Named parameters: key=value ... or one JSON object
    #[arg(value_name = "PARAMS", allow_hyphen_values = true)]
    params: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Probe {
    /// Has a peer and is within a few blocks of the best chain it knows
    Ready,
    /// Running without a fatal fault
    Healthy,
}

/// How the command ended, as its exit status.
enum Failure {
    Usage(anyhow::Error),
    Refused(anyhow::Error),
    Unreachable(anyhow::Error),
}

fn main() -> ExitCode {
    let args: Args = apiary_cmdline::start();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, error) = match failure {
                Failure::Refused(e) => (1, e),
                Failure::Usage(e) => (2, e),
                Failure::Unreachable(e) => (3, e),
            };
            eprintln!("error: {}", apiary_cmdline::error_line(&error));
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    let Some(seconds) = args.wait else {
        return run_once(args);
    };
    // Only "no node answered" is waited out; a refusal or bad usage ends it at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        match run_once(args) {
            Err(Failure::Unreachable(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            outcome => return outcome,
        }
    }
}

fn run_once(args: &Args) -> Result<(), Failure> {
    let client = client(args)?;
    let method = match (args.probe, &args.method) {
        (Some(probe), _) => return run_probe(&client, probe),
        (None, Some(method)) => method,
        (None, None) => return Err(Failure::Usage(anyhow!("name a method (or --probe)"))),
    };
    if method == "help" {
        return help(&client, &args.params);
    }
    let params = params::parse(&args.params).map_err(Failure::Usage)?;
    match client.call(method, params) {
        Ok(result) => {
            print(&result, args.raw);
            Ok(())
        }
        Err(error @ ClientError::Rpc { .. }) => Err(Failure::Refused(error.into())),
        Err(error) => Err(Failure::Unreachable(error.into())),
    }
}

fn run_probe(client: &Client, probe: Probe) -> Result<(), Failure> {
    let path = match probe {
        Probe::Ready => "/ready",
        Probe::Healthy => "/healthy",
    };
    match client.probe(path) {
        Ok(answer) => {
            println!("{}", answer.trim());
            Ok(())
        }
        Err(error @ ClientError::ProbeFailed { .. }) => Err(Failure::Refused(error.into())),
        Err(error) => Err(Failure::Unreachable(error.into())),
    }
}

fn print(value: &Value, raw: bool) {
    match (raw, value) {
        (true, Value::String(text)) => println!("{text}"),
        (true, value) => println!("{value}"),
        (false, value) => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
    }
}

/// The node named by the flags: --rpc, else a data dir's rpc.addr and rpc.cookie.
fn client(args: &Args) -> Result<Client, Failure> {
    if let Some(url) = &args.rpc {
        let endpoint = Endpoint::with_cookie(url, args.rpc_cookie.as_deref());
        return Ok(Client::new(vec![endpoint]));
    }
    let datadir =
        match &args.datadir {
            Some(dir) => dir.clone(),
            None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| {
                Failure::Usage(anyhow!("HOME is not set; give --datadir or --rpc"))
            })?)
            .join(DEVNET_DIR),
        };
    Ok(Client::new(vec![from_datadir(&datadir)?]))
}

fn from_datadir(datadir: &Path) -> Result<Endpoint, Failure> {
    let addr_file = datadir.join("rpc.addr");
    let addr = match std::fs::read_to_string(&addr_file) {
        Ok(addr) => addr.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::Unreachable(anyhow!(
                "no node is running with data dir {} (it has no rpc.addr); start one with \
             `apiary-node{}`, or name another with --datadir DIR or --rpc URL",
                datadir.display(),
                if datadir.ends_with(DEVNET_DIR) {
                    String::new()
                } else {
                    format!(" --datadir {}", datadir.display())
                }
            )))
        }
        Err(e) => {
            return Err(Failure::Usage(
                anyhow!(e).context(format!("cannot read {}", addr_file.display())),
            ))
        }
    };
    Ok(Endpoint::with_cookie(
        &addr,
        Some(&datadir.join("rpc.cookie")),
    ))
}

/// `help`: the methods the node serves; `help METHOD`: one of them in full.
fn help(client: &Client, wanted: &[String]) -> Result<(), Failure> {
    let methods = client
        .ask::<apiary_api::RpcMethods>(&apiary_api::NoParams {})
        .map_err(|e| match e {
            e @ ClientError::Rpc { .. } => Failure::Refused(e.into()),
            e => Failure::Unreachable(e.into()),
        })?;
    match wanted {
        [] => {
            let width = methods.iter().map(|m| m.name.len()).max().unwrap_or(0);
            for method in &methods {
                println!("{:<width$}  {}", method.name, method.about);
            }
            println!("\n`apiary-cli help METHOD` shows its parameters and result.");
            Ok(())
        }
        [wanted] => {
            let Some(method) = methods.iter().find(|m| m.name == *wanted) else {
                let names: Vec<&str> = methods.iter().map(|m| m.name.as_str()).collect();
                let hint = apiary_cmdline::nearest(wanted, names)
                    .map(|n| format!("; did you mean {n:?}?"))
                    .unwrap_or_default();
                return Err(Failure::Usage(anyhow!(
                    "the node has no method {wanted:?}{hint} (`apiary-cli help` lists them)"
                )));
            };
            println!("{} — {}", method.name, method.about);
            if method.params.is_empty() {
                println!("\nno parameters");
            } else {
                println!("\nparameters:");
                for p in &method.params {
                    println!(
                        "  {}{}  {}",
                        p.name,
                        if p.required { "" } else { " (optional)" },
                        p.about
                    );
                }
            }
            println!("\nresult: {}", method.result);
            Ok(())
        }
        _ => Err(Failure::Usage(anyhow!("usage: apiary-cli help [METHOD]"))),
    }
}
