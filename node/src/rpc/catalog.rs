//! Every RPC method, with what it takes and gives: the dispatcher and `rpc_methods` (which
//! `apiary-cli help` shows) read the same table, so the documentation cannot drift from
//! what the node serves.

use super::methods::{self, answer, parse, NoParams};
use super::mining;
use super::proofs;
use super::{RpcContext, RpcError, METHOD_NOT_FOUND};
use serde_json::Value;

pub struct Param {
    pub name: &'static str,
    pub required: bool,
    pub about: &'static str,
}

pub struct Method {
    pub name: &'static str,
    pub about: &'static str,
    pub params: &'static [Param],
    pub result: &'static str,
    run: fn(&RpcContext, Value) -> Result<Value, RpcError>,
}

const fn required(name: &'static str, about: &'static str) -> Param {
    Param {
        name,
        required: true,
        about,
    }
}

const fn optional(name: &'static str, about: &'static str) -> Param {
    Param {
        name,
        required: false,
        about,
    }
}

pub const METHODS: &[Method] = &[
    Method {
        name: "rpc_methods",
        about: "Lists every method with its parameters and result",
        params: &[],
        result: "[{name, about, params: [{name, required, about}], result}]",
        run: |_, params| {
            parse::<NoParams>(params)?;
            answer(Ok(describe()))
        },
    },
    Method {
        name: "node_info",
        about: "The node: version, chain, peer id, height, sync progress, warnings",
        params: &[],
        result: "{version, chain_id, genesis_hash, address_prefix, target_block_time_ms, peer_id, \
                 height, syncing, \
                 sync: {best_known_height, blocks_per_s, eta_s, download_peers, held_back_until_ms}, clock_warning, \
                 storage_full}; syncing and best_known_height come from checked headers only",
        run: |c, p| answer(methods::node_info(c, parse(p)?)),
    },
    Method {
        name: "chain_tip",
        about: "The tip of the best chain",
        params: &[],
        result: "{height, hash, total_work, timestamp_ms}",
        run: |c, p| answer(methods::chain_tip(c, parse(p)?)),
    },
    Method {
        name: "block_get",
        about: "A block by height (main chain) or hash (any known block)",
        params: &[
            optional("height", "height on the main chain"),
            optional("hash", "block hash (hex); give height or hash"),
            optional("raw", "true: {hash, hex} with the block's borsh bytes"),
        ],
        result: "header fields, hash, total_work, status, main_chain, confirmations, size, txs",
        run: |c, p| answer(methods::block_get(c, parse(p)?)),
    },
    Method {
        name: "account_get",
        about: "An account's balance and nonce, and what it has pending",
        params: &[required("address", "bech32m address")],
        result: "{address, balance, nonce, pending: {count, next_nonce, spend}}",
        run: |c, p| answer(methods::account_get(c, parse(p)?)),
    },
    Method {
        name: "account_proof",
        about: "An account, or its absence, with a proof against the tip header's state root",
        params: &[
            required("address", "bech32m address"),
            optional("height", "the tip's height (only the tip's state is kept)"),
        ],
        result: "{address, height, block_hash, state_root, account: {balance, nonce} or null, \
                 proof}: proof is hex of the borsh AccountProof (docs/protocol.md)",
        run: |c, p| answer(proofs::account_proof(c, parse(p)?)),
    },
    Method {
        name: "headers_get",
        about: "Main-chain headers from a height on, as their 160 bytes each",
        params: &[
            required("from", "the first header's height"),
            required("count", "how many, 1 to 2,000 (fewer at the tip)"),
        ],
        result: "{from, headers: [hex], tip_height}",
        run: |c, p| answer(proofs::headers_get(c, parse(p)?)),
    },
    Method {
        name: "tx_proof",
        about: "A confirmed transaction's bytes and the Merkle path of its txid to its block's tx_root",
        params: &[required("txid", "transaction id (hex)")],
        result: "{txid, height, block_hash, index, tx_count, path: [hex], tx: hex}",
        run: |c, p| answer(proofs::tx_proof(c, parse(p)?)),
    },
    Method {
        name: "chain_spec",
        about: "The chain spec this node follows, as its borsh bytes, and the genesis hash",
        params: &[],
        result: "{genesis_hash, spec: hex}",
        run: |c, p| answer(proofs::chain_spec(c, parse(p)?)),
    },
    Method {
        name: "account_totals",
        about: "What an address received and sent on the main chain, in all",
        params: &[required("address", "bech32m address")],
        result: "{address, allocated, received, sent, entries, balance}: allocated at \
                 genesis; received counts block rewards, sent counts fees (allocated + received \
                 - sent = balance); entries: its transfers and rewards (at most 20,000 are added \
                 up: error -32040 past them)",
        run: |c, p| answer(methods::account_totals(c, parse(p)?)),
    },
    Method {
        name: "account_history",
        about: "Transactions and rewards of an address, newest first, a page at a time",
        params: &[
            required("address", "bech32m address"),
            optional("limit", "entries per page, 1 to 500 (default 50)"),
            optional("cursor", "next_cursor of the previous page"),
        ],
        result: "{address, txs, next_cursor, pending}: each kind transfer (txid, from, to, \
                 amount, fee, nonce) or reward, with height, block_hash, confirmations",
        run: |c, p| answer(methods::account_history(c, parse(p)?)),
    },
    Method {
        name: "fee_estimate",
        about: "A fee that makes the next block as things stand",
        params: &[],
        result: "{fee, min_fee, pending}",
        run: |c, p| answer(methods::fee_estimate(c, parse(p)?)),
    },
    Method {
        name: "tx_submit",
        about: "Submits a signed transaction to the mempool and the network",
        params: &[required(
            "tx",
            "hex of the signed transaction's borsh bytes",
        )],
        result: "{txid}",
        run: |c, p| answer(methods::tx_submit(c, parse(p)?)),
    },
    Method {
        name: "tx_get",
        about: "A transaction and where it is",
        params: &[
            required("txid", "transaction id (hex)"),
            optional(
                "raw",
                "true: also hex, the signed transaction's borsh bytes",
            ),
        ],
        result: "{txid, status: pending|confirmed|unknown, height, block_hash, confirmations, \
                 tx: {txid, from, to, amount, fee, nonce, chain_id, signature}}",
        run: |c, p| answer(methods::tx_get(c, parse(p)?)),
    },
    Method {
        name: "mempool_info",
        about: "The mempool's size and the lowest fee it takes",
        params: &[],
        result: "{count, bytes, min_fee}",
        run: |c, p| answer(methods::mempool_info(c, parse(p)?)),
    },
    Method {
        name: "mempool_txs",
        about: "The newest transactions in the mempool",
        params: &[optional("limit", "how many, 1 to 500 (default 50)")],
        result: "{count, txs: [{txid, from, to, amount, fee, nonce, chain_id, signature, \
                 age_ms}]}",
        run: |c, p| answer(methods::mempool_txs(c, parse(p)?)),
    },
    Method {
        name: "block_arrivals",
        about: "When this node had each of the last 64 main-chain blocks",
        params: &[],
        result: "[{height, hash, timestamp_ms, received_ms, received_us}], newest first; \
                 received by this node's clock",
        run: |c, p| answer(methods::block_arrivals(c, parse(p)?)),
    },
    Method {
        name: "net_peers",
        about: "Connected peers",
        params: &[],
        result: "[{peer_id, addr, inbound, height, score, gossip_score, topics, rtt_ms}]: height \
                 as its status claims, score its misbehaviour points (a ban at 100), topics the \
                 gossip topics it subscribed to (blocks and txs reach it by gossip only once it \
                 has), rtt_ms its answer to our last ping",
        run: |c, p| answer(methods::net_peers(c, parse(p)?)),
    },
    Method {
        name: "net_connect",
        about: "Lifts any ban on a peer and dials it",
        params: &[required("addr", "multiaddr ending in /p2p/<peer id>")],
        result: "{dialing}",
        run: |c, p| answer(methods::net_connect(c, parse(p)?)),
    },
    Method {
        name: "net_disconnect",
        about: "Closes every connection to a peer and refuses it for a while",
        params: &[
            required("peer_id", "the peer's id"),
            optional(
                "ban_seconds",
                "refuse it this long, at most a year (default 0)",
            ),
        ],
        result: "{disconnected, ban_seconds}",
        run: |c, p| answer(methods::net_disconnect(c, parse(p)?)),
    },
    Method {
        name: "mining_template",
        about: "A block template for a miner outside the node: a header to search nonces in",
        params: &[
            required("address", "who the block pays"),
            optional(
                "longpoll_id",
                "the longpoll_id of the last template: answers once the tip changes, fees grow \
                 by a tenth, or 25 s pass",
            ),
            optional(
                "txs",
                "true: also each transaction's bytes (hex), for a pool",
            ),
        ],
        result: "{id, height, prev_hash, bits, target, timestamp_ms, header (hex, 160 bytes, \
                 nonce 0), nonce_offset, timestamp_offset, reward, fees, tx_count, longpoll_id, \
                 txs?}",
        run: |c, p| answer(mining::mining_template(c, parse(p)?)),
    },
    Method {
        name: "mining_submit",
        about: "A found nonce for a template (or a whole block)",
        params: &[
            optional("id", "the template's id"),
            optional("nonce", "the nonce found (a number or a decimal string)"),
            optional(
                "timestamp_ms",
                "the header's timestamp, if the miner rolled it forward",
            ),
            optional("block", "or a whole block's borsh bytes (hex)"),
        ],
        result: "{status: accepted|stale|refused, hash, reason, reason_code}",
        run: |c, p| answer(mining::mining_submit(c, parse(p)?)),
    },
    Method {
        name: "dev_mine",
        about: "Mines blocks now, on this node's threads (for development chains)",
        params: &[
            required("blocks", "how many, 1 to 10000"),
            optional("address", "who is paid (default: --miner-address)"),
        ],
        result: "{hashes}",
        run: |c, p| answer(methods::dev_mine(c, parse(p)?)),
    },
];

pub fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// The method whose name is nearest `name`, if any is near enough to be a typo.
pub fn nearest(name: &str) -> Option<&'static str> {
    apiary_cmdline::nearest(name, METHODS.iter().map(|m| m.name))
}

pub fn call(context: &RpcContext, name: &str, params: Value) -> Result<Value, RpcError> {
    match find(name) {
        Some(method) => (method.run)(context, params),
        None => {
            let hint = match nearest(name) {
                Some(near) => format!("; did you mean {near:?}?"),
                None => String::new(),
            };
            Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {name:?}{hint} (rpc_methods lists them all)"),
            ))
        }
    }
}

fn describe() -> Vec<apiary_api::MethodDoc> {
    METHODS
        .iter()
        .map(|m| apiary_api::MethodDoc {
            name: m.name.into(),
            about: m.about.into(),
            params: m
                .params
                .iter()
                .map(|p| apiary_api::ParamDoc {
                    name: p.name.into(),
                    required: p.required,
                    about: p.about.into(),
                })
                .collect(),
            result: m.result.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_api::{self as api, param_names};

    /// The catalog's name and parameter names of `M`, against its params type.
    fn agrees<M: api::Method>() -> &'static str {
        let method = find(M::NAME).unwrap_or_else(|| panic!("{} is not in the catalog", M::NAME));
        let mut documented: Vec<&str> = method.params.iter().map(|p| p.name).collect();
        let typed = param_names::<M::Params>();
        let mut typed: Vec<&str> = typed.iter().map(String::as_str).collect();
        documented.sort_unstable();
        typed.sort_unstable();
        assert_eq!(
            documented,
            typed,
            "{}: the catalog's params against the typed ones",
            M::NAME
        );
        M::NAME
    }

    #[test]
    fn the_readme_lists_exactly_the_methods_the_catalog_serves() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("the README beside the node");
        let table: std::collections::BTreeSet<&str> = readme
            .lines()
            .skip_while(|line| !line.starts_with("| method | params | result |"))
            .skip(2)
            .take_while(|line| line.starts_with("| `"))
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
            .collect();
        let served: std::collections::BTreeSet<&str> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(
            table, served,
            "the README's method table against the catalog"
        );
    }

    #[test]
    fn every_method_is_typed_and_the_catalog_names_its_params() {
        let typed = [
            agrees::<api::RpcMethods>(),
            agrees::<api::NodeInfo>(),
            agrees::<api::ChainTip>(),
            agrees::<api::BlockGet>(),
            agrees::<api::AccountGet>(),
            agrees::<api::AccountProof>(),
            agrees::<api::HeadersGet>(),
            agrees::<api::TxProof>(),
            agrees::<api::ChainSpecGet>(),
            agrees::<api::AccountTotals>(),
            agrees::<api::AccountHistory>(),
            agrees::<api::FeeEstimate>(),
            agrees::<api::TxSubmit>(),
            agrees::<api::TxGet>(),
            agrees::<api::MempoolInfo>(),
            agrees::<api::MempoolTxs>(),
            agrees::<api::BlockArrivals>(),
            agrees::<api::NetPeers>(),
            agrees::<api::NetConnect>(),
            agrees::<api::NetDisconnect>(),
            agrees::<api::MiningTemplate>(),
            agrees::<api::MiningSubmit>(),
            agrees::<api::DevMine>(),
        ];
        let served: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(
            typed.to_vec(),
            served,
            "one typed method per catalog entry, in its order"
        );
    }

    #[test]
    fn a_typo_finds_the_method_meant() {
        assert_eq!(nearest("chain_tipp"), Some("chain_tip"));
        assert_eq!(nearest("blockget"), Some("block_get"));
        assert_eq!(nearest("nodeinfo"), Some("node_info"));
        assert_eq!(nearest("completely_else"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = METHODS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METHODS.len());
    }
}
