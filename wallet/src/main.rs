//! `apiary-wallet`: hold keys, check balances, send coins. Keys stay in the keystore on
//! this machine; transactions are signed here and handed to a node over JSON-RPC.

use anyhow::{anyhow, bail, Context, Result};
use apiary_core::{Address, Amount, ChainId};
use apiary_wallet::client::{Client, ClientError, Endpoint};
use apiary_wallet::keystore::{generate_mnemonic, parse_mnemonic, KdfParams, Keystore};
use clap::{Parser, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

mod pay;
mod query;
mod verified;
mod watch;

const DEFAULT_RPC: &str = "http://127.0.0.1:9797";

#[derive(Parser)]
#[command(
    name = "apiary-wallet",
    version,
    about = "Hold Apiary coins: keys stay on this machine, payments go through any node",
    after_help = "Passwords are prompted for without echo, or read from --password-file or \
                  APIARY_WALLET_PASSWORD. Amounts are in coins (1.5 = one and a half coins)."
)]
struct Args {
    #[command(flatten)]
    options: Options,
    #[command(subcommand)]
    command: Command,
}

/// What every command takes (before or after the command's name).
#[derive(clap::Args)]
#[command(next_help_heading = "Global options (any command)")]
struct Options {
    /// Where the keystore (wallet.json) and config.toml live [default: ~/.apiary/wallet]
    #[arg(long, global = true, value_name = "DIR", env = "APIARY_WALLET_DIR")]
    wallet_dir: Option<PathBuf>,
    /// Settings file (rpc, rpc_cookie) [default: <wallet-dir>/config.toml]
    #[arg(long, global = true, value_name = "FILE", env = "APIARY_WALLET_CONFIG")]
    config: Option<PathBuf>,
    /// A node's JSON-RPC URL; repeat for several: the first that answers is used
    /// [default: from the config file, else http://127.0.0.1:9797]
    #[arg(long, global = true, value_name = "URL")]
    rpc: Vec<String>,
    /// A node's rpc.cookie; one per --rpc in the same order, or one for all
    /// [default: ~/.apiary/apiary-devnet/rpc.cookie when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    rpc_cookie: Vec<PathBuf>,
    /// Read the keystore password from this file (first line)
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Print results as JSON, for scripts
    #[arg(long, global = true)]
    json: bool,
    /// Take balances, nonces and confirmations on the node's word, without proving them
    /// against this wallet's own chain of headers (<wallet-dir>/headers)
    #[arg(long, global = true)]
    trust_node: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a wallet with a new 24-word mnemonic (shown once: write it down)
    New {
        /// Chain id, when no node answers [default: the node's]
        #[arg(long)]
        chain_id: Option<String>,
        /// Address prefix, when no node answers [default: the node's]
        #[arg(long)]
        address_prefix: Option<String>,
    },
    /// Create a wallet from an existing mnemonic (prompted for, or from a file or stdin)
    Import {
        /// Read the words from this file [default: a prompt, or stdin when it is not a
        /// terminal]
        #[arg(long, value_name = "FILE")]
        mnemonic_file: Option<PathBuf>,
        /// Also list accounts 1..N-1
        #[arg(long, default_value_t = 1, value_name = "N")]
        accounts: u32,
        /// Chain id, when no node answers [default: the node's]
        #[arg(long)]
        chain_id: Option<String>,
        /// Address prefix, when no node answers [default: the node's]
        #[arg(long)]
        address_prefix: Option<String>,
    },
    /// Print an account's address (the default account unless --account)
    Address {
        /// The account's index (see `account list`)
        #[arg(long, value_name = "I")]
        account: Option<u32>,
    },
    /// Manage the wallet's accounts
    #[command(subcommand)]
    Account(AccountCommand),
    /// Balance, nonce and pending spend of an address (the default account's by default)
    Balance {
        /// Any address of the wallet's chain
        address: Option<String>,
    },
    /// Pay AMOUNT coins to TO
    #[command(override_usage = "apiary-wallet send <TO> <AMOUNT> [OPTIONS]\n       \
                                apiary-wallet send --to <TO> --amount <AMOUNT> [OPTIONS]")]
    Send {
        #[command(flatten)]
        payment: Payment,
        /// Fee in coins [default: the node's fee_estimate]
        #[arg(long, value_name = "COINS")]
        fee: Option<String>,
        /// Wait for N confirmations (1 when given without N), with a spinner
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
        wait: Option<u64>,
        /// How long --wait waits, in seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        timeout: u64,
        /// Pay from this account [default: the default account]
        #[arg(long, value_name = "I")]
        account: Option<u32>,
    },
    /// Transactions of an address, newest first (pending ones on top)
    History {
        /// Any address of the wallet's chain
        address: Option<String>,
        /// Entries per page, 1 to 500
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Continue after a previous page (its next_cursor)
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
    },
    /// Follow an address live: each transaction as it goes pending, confirmed (deeper each
    /// block) or dropped; one line each (JSON with --json)
    Watch {
        /// Any address of the wallet's chain [default: the wallet's]
        address: Option<String>,
        /// Report confirmations up to this many, 1 to 1000
        #[arg(long, value_name = "N", default_value_t = 6,
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        confirmations: u64,
        /// Stop after this many events [default: run until interrupted]
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// Poll the node's history instead of subscribing (for nodes without WebSocket)
        #[arg(long)]
        poll: bool,
    },
    /// What a node knows of a transaction
    Tx {
        /// 64 hex digits
        txid: String,
    },
    /// Sign a payment without any node; write its hex to a file for `broadcast`
    #[command(
        override_usage = "apiary-wallet sign <TO> <AMOUNT> --nonce <N> --fee <COINS> -o <FILE>\n       \
                                apiary-wallet sign --to <TO> --amount <AMOUNT> --nonce <N> --fee <COINS> -o <FILE>"
    )]
    Sign {
        #[command(flatten)]
        payment: Payment,
        /// The sending account's next nonce (see `balance` on a connected machine)
        #[arg(long)]
        nonce: u64,
        /// Fee in coins
        #[arg(long, value_name = "COINS")]
        fee: String,
        /// Sign for this account [default: the default account]
        #[arg(long, value_name = "I")]
        account: Option<u32>,
        /// Where to write the signed transaction's hex
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Submit a transaction signed with `sign`
    Broadcast {
        /// A file written by `sign`
        file: PathBuf,
    },
    /// Give the node again every transaction this wallet sent that it no longer knows
    /// (send, balance and history do this too), and say what became of each
    Rebroadcast,
}

/// Whom to pay and how much: `TO AMOUNT`, or `--to TO --amount AMOUNT` (as people also
/// type them), never half of each.
#[derive(clap::Args)]
struct Payment {
    /// The recipient's address (checksum and chain prefix are checked)
    #[arg(
        value_name = "TO",
        required_unless_present = "to_flag",
        conflicts_with = "to_flag"
    )]
    to: Option<String>,
    /// Coins to pay, e.g. 1.5
    #[arg(
        value_name = "AMOUNT",
        required_unless_present = "amount_flag",
        conflicts_with = "amount_flag"
    )]
    amount: Option<String>,
    /// The recipient, as a flag (instead of TO)
    #[arg(long = "to", value_name = "TO", requires = "amount_flag")]
    to_flag: Option<String>,
    /// Coins to pay, as a flag (instead of AMOUNT)
    #[arg(long = "amount", value_name = "AMOUNT", requires = "to_flag")]
    amount_flag: Option<String>,
}

impl Payment {
    fn to(&self) -> &str {
        self.to_flag
            .as_deref()
            .or(self.to.as_deref())
            .unwrap_or_default()
    }

    fn amount(&self) -> &str {
        self.amount_flag
            .as_deref()
            .or(self.amount.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Derive the next account
    New {
        /// A name to show in `account list`
        #[arg(long)]
        label: Option<String>,
    },
    /// List the accounts
    List,
    /// Make account I the default
    Default {
        /// The account's index (see `account list`)
        index: u32,
    },
}

/// `<wallet-dir>/config.toml`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rpc: Vec<String>,
    #[serde(default)]
    rpc_cookie: Vec<PathBuf>,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn main() {
    let args: Args = apiary_cmdline::start();
    let json = args.options.json;
    if let Err(error) = run(args) {
        if json {
            println!("{}", json!({"error": apiary_cmdline::error_line(&error)}));
        } else {
            eprintln!("error: {}", apiary_cmdline::error_line(&error));
        }
        std::process::exit(1);
    }
}

struct Wallet {
    /// `options.wallet_dir`, or the default.
    dir: PathBuf,
    options: Options,
}

fn run(args: Args) -> Result<()> {
    let wallet = Wallet {
        dir: args
            .options
            .wallet_dir
            .clone()
            .unwrap_or_else(|| home().join(".apiary").join("wallet")),
        options: args.options,
    };
    match args.command {
        Command::New {
            chain_id,
            address_prefix,
        } => wallet.create(None, 1, chain_id, address_prefix),
        Command::Import {
            mnemonic_file,
            accounts,
            chain_id,
            address_prefix,
        } => {
            let phrase = read_mnemonic(mnemonic_file.as_deref())?;
            wallet.create(Some(phrase), accounts.max(1), chain_id, address_prefix)
        }
        Command::Address { account } => {
            let keystore = wallet.keystore()?;
            let index = account.unwrap_or(keystore.default_account());
            let entry = keystore.account(index)?;
            wallet.print(json!({"account": index, "address": entry.address}), || {
                entry.address.clone()
            });
            Ok(())
        }
        Command::Account(command) => wallet.account(command),
        Command::Balance { address } => wallet.balance(address),
        Command::Send {
            payment,
            fee,
            wait,
            timeout,
            account,
        } => wallet.send(
            payment.to(),
            payment.amount(),
            fee.as_deref(),
            wait,
            timeout,
            account,
        ),
        Command::History {
            address,
            limit,
            cursor,
        } => wallet.history(address, limit, cursor),
        Command::Tx { txid } => wallet.tx(&txid),
        Command::Watch {
            address,
            confirmations,
            count,
            poll,
        } => wallet.watch(address, confirmations, count, poll),
        Command::Sign {
            payment,
            nonce,
            fee,
            account,
            output,
        } => wallet.sign_offline(
            payment.to(),
            payment.amount(),
            nonce,
            &fee,
            account,
            &output,
        ),
        Command::Broadcast { file } => wallet.broadcast(&file),
        Command::Rebroadcast => wallet.rebroadcast(),
    }
}

/// A mnemonic from a file, from piped stdin, or typed at a prompt without echo.
fn read_mnemonic(file: Option<&Path>) -> Result<Zeroizing<String>> {
    let text = match file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read mnemonic file {}", path.display()))?,
        ),
        None if std::io::stdin().is_terminal() => Zeroizing::new(
            rpassword::prompt_password("Mnemonic (words separated by spaces): ")
                .context("cannot read the mnemonic")?,
        ),
        None => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the mnemonic from stdin")?;
            line
        }
    };
    Ok(parse_mnemonic(&text)?)
}

fn parse_coins(what: &str, text: &str) -> Result<Amount> {
    Amount::parse_coins(text).with_context(|| format!("{what} {text:?} is not an amount"))
}

impl Wallet {
    fn keystore_path(&self) -> PathBuf {
        Keystore::path_in(&self.dir)
    }

    fn keystore(&self) -> Result<Keystore> {
        Ok(Keystore::load(&self.keystore_path())?)
    }

    fn print(&self, value: Value, human: impl FnOnce() -> String) {
        if self.options.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }

    /// The password for an existing keystore: from the file, the environment, or a prompt.
    fn password(&self, confirm: bool) -> Result<Zeroizing<String>> {
        if let Some(path) = &self.options.password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read password file {}", path.display()))?;
            return Ok(Zeroizing::new(
                text.lines().next().unwrap_or_default().to_string(),
            ));
        }
        if let Ok(password) = std::env::var("APIARY_WALLET_PASSWORD") {
            return Ok(Zeroizing::new(password));
        }
        // From the terminal itself, so a mnemonic can still come through a pipe.
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(Zeroizing::new)
                .map_err(|e| {
                    anyhow!(
                        "cannot ask for a password ({e}): give --password-file or set \
                     APIARY_WALLET_PASSWORD"
                    )
                })
        };
        let password = ask("Wallet password: ")?;
        if confirm && *ask("Repeat the password: ")? != *password {
            bail!("the passwords differ; nothing was written");
        }
        Ok(password)
    }

    /// The nodes to talk to: --rpc flags, else the config file, else the local devnet.
    fn client(&self) -> Result<Client> {
        Ok(Client::new(self.endpoints()?))
    }

    /// The nodes to talk to, in order of preference.
    fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let config_path = self
            .options
            .config
            .clone()
            .unwrap_or_else(|| self.dir.join("config.toml"));
        let config: Config = match std::fs::read_to_string(&config_path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid", config_path.display()))?,
            Err(_) if self.options.config.is_none() => Config::default(),
            Err(e) => bail!("cannot read config file {}: {e}", config_path.display()),
        };
        let (urls, cookies) = if !self.options.rpc.is_empty() {
            (self.options.rpc.clone(), self.options.rpc_cookie.clone())
        } else if !config.rpc.is_empty() {
            let cookies = if self.options.rpc_cookie.is_empty() {
                config.rpc_cookie
            } else {
                self.options.rpc_cookie.clone()
            };
            (config.rpc, cookies)
        } else {
            let devnet_cookie = home().join(".apiary/apiary-devnet/rpc.cookie");
            let cookies = if self.options.rpc_cookie.is_empty() && devnet_cookie.exists() {
                vec![devnet_cookie]
            } else {
                self.options.rpc_cookie.clone()
            };
            (vec![DEFAULT_RPC.to_string()], cookies)
        };
        Ok(Endpoint::pair(&urls, &cookies)?)
    }

    /// A client whose node runs the keystore's chain.
    fn client_for(&self, keystore: &Keystore) -> Result<Client> {
        let client = self.client()?;
        let info = client.ask::<apiary_api::NodeInfo>(&apiary_api::NoParams {})?;
        let chain = info.chain_id;
        if chain != keystore.chain_id() {
            bail!(
                "the node runs chain {chain:?}, this wallet is for {:?}",
                keystore.chain_id()
            );
        }
        Ok(client)
    }

    fn create(
        &self,
        phrase: Option<Zeroizing<String>>,
        accounts: u32,
        chain_id: Option<String>,
        address_prefix: Option<String>,
    ) -> Result<()> {
        let path = self.keystore_path();
        if path.exists() {
            return Err(apiary_wallet::keystore::KeystoreError::Exists(path).into());
        }
        let (chain_id, prefix) = match (chain_id, address_prefix) {
            (Some(chain), Some(prefix)) => (chain, prefix),
            (chain, prefix) => {
                let info = self
                    .client()?
                    .ask::<apiary_api::NodeInfo>(&apiary_api::NoParams {})
                    .map_err(|e| match e {
                        ClientError::Unreachable(_) => anyhow!(
                            "{e}; to create a wallet offline give --chain-id and --address-prefix"
                        ),
                        other => other.into(),
                    })?;
                (
                    chain.unwrap_or(info.chain_id),
                    prefix.unwrap_or(info.address_prefix),
                )
            }
        };
        ChainId::new(&chain_id).map_err(|e| anyhow!("chain id {chain_id:?}: {e}"))?;
        let prefix = apiary_core::AddressPrefix::new(&prefix)
            .map_err(|e| anyhow!("address prefix {prefix:?}: {e}"))?;
        let fresh = phrase.is_none();
        let phrase = phrase.unwrap_or_else(generate_mnemonic);
        let password = self.password(true)?;
        if password.is_empty() {
            bail!("an empty password would leave the keys unprotected; choose one");
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create wallet dir {}", self.dir.display()))?;
        let mut keystore = Keystore::create(
            &path,
            &phrase,
            password.as_bytes(),
            &chain_id,
            &prefix,
            KdfParams::recommended(),
        )?;
        if accounts > 1 {
            let unlocked = keystore.unlock(password.as_bytes())?;
            for _ in 1..accounts {
                keystore.add_account(&unlocked, None)?;
            }
        }
        let address = keystore.accounts()[0].address.clone();
        let mut value = json!({
            "keystore": path,
            "chain_id": chain_id,
            "address": address,
            "accounts": keystore.accounts().iter().map(|a| &a.address).collect::<Vec<_>>(),
        });
        if fresh {
            value["mnemonic"] = json!(*phrase);
        }
        self.print(value, || {
            let mut text = String::new();
            if fresh {
                text.push_str(&format!(
                    "Your recovery phrase (24 words). Write it down and keep it offline: anyone \
                     who sees it can spend your coins, and it is the only way to recover them. \
                     It is not shown again.\n\n    {}\n\n",
                    *phrase
                ));
            }
            text.push_str(&format!(
                "Wallet for chain {chain_id} written to {}\nAddress: {address}",
                path.display()
            ));
            text
        });
        Ok(())
    }

    fn account(&self, command: AccountCommand) -> Result<()> {
        let mut keystore = self.keystore()?;
        match command {
            AccountCommand::New { label } => {
                let unlocked = keystore.unlock(self.password(false)?.as_bytes())?;
                let entry = keystore.add_account(&unlocked, label)?;
                self.print(json!(entry), || {
                    format!("account {}: {}", entry.index, entry.address)
                });
            }
            AccountCommand::List => {
                let default = keystore.default_account();
                self.print(
                    json!({"default": default, "accounts": keystore.accounts()}),
                    || {
                        keystore
                            .accounts()
                            .iter()
                            .map(|a| {
                                format!(
                                    "{} {:>3}  {}  {}",
                                    if a.index == default { "*" } else { " " },
                                    a.index,
                                    a.address,
                                    a.label.as_deref().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    },
                );
            }
            AccountCommand::Default { index } => {
                keystore.set_default_account(index)?;
                self.print(json!({"default": index}), || {
                    format!("account {index} is now the default")
                });
            }
        }
        Ok(())
    }

    /// An address typed by the user, checked against the wallet's chain; the default
    /// account's when none is given.
    fn address_or_default(&self, keystore: &Keystore, text: Option<String>) -> Result<String> {
        match text {
            Some(text) => {
                Address::parse(&text, keystore.prefix())?;
                Ok(text)
            }
            None => Ok(keystore
                .account(keystore.default_account())?
                .address
                .clone()),
        }
    }

    /// Gives the node what this wallet sent and it lost, so what follows counts it.
    fn resend_lost(&self, client: &Client, keystore: &Keystore) -> Result<()> {
        let mut outbox = apiary_wallet::outbox::Outbox::load(&self.dir)?;
        self.rebroadcast_with(client, keystore, &mut outbox, false)?;
        Ok(())
    }
}
