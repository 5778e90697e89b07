// The explorer: one page, routed by the URL's hash (#/block/12, #/tx/<id>, ...).
import { api, subscribe, coins, short, ago, el } from "./common.js";

const view = document.getElementById("view");
let info = null;
let stopLive = () => {};

const blockLink = (id, text = id) => el("a", { href: `#/block/${id}` }, typeof text === "string" ? short(text, 12) : text);
const txLink = (txid) => el("a", { class: "mono", href: `#/tx/${txid}` }, short(txid, 12));
const addressLink = (address) => el("a", { class: "mono", href: `#/address/${address}` }, short(address, 14));

function show(...children) {
  view.replaceChildren(...children);
}

function failure(error) {
  show(el("p", { class: "error", id: "error" }, String(error.message || error)));
}

function table(headers, rows, id) {
  return el("table", id ? { id } : {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", h.endsWith("#") ? { class: "num" } : {}, h.replace(/#$/, ""))))),
    el("tbody", {}, rows));
}

function fields(pairs) {
  return el("dl", { class: "fields" }, pairs.flatMap(([name, value, id]) => [el("dt", {}, name), el("dd", id ? { id } : {}, value)]));
}

function blockRow(block) {
  return el("tr", { "data-height": block.height },
    el("td", { class: "num" }, blockLink(block.height, String(block.height))),
    el("td", { class: "mono" }, blockLink(block.hash, block.hash)),
    el("td", { class: "num" }, block.tx_count ?? block.txs?.length ?? 0),
    el("td", {}, ago(block.timestamp_ms)));
}

async function home() {
  const tip = await api("", "chain_tip");
  const [mempool, peers] = await Promise.all([api("", "mempool_info"), api("", "net_peers")]);
  const heights = [];
  for (let h = tip.height; h >= 0 && h > tip.height - 20; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((height) => api("", "block_get", { height })));
  const rows = el("tbody", {}, blocks.map((b) => blockRow({ ...b, tx_count: b.txs.length })));
  const tipHeight = el("div", { class: "value", id: "tip-height" }, tip.height);
  const mempoolCount = el("div", { class: "value", id: "mempool-count" }, mempool.count);
  show(
    el("div", { class: "cards" },
      el("div", { class: "card" }, el("div", { class: "label" }, "Height"), tipHeight),
      el("div", { class: "card" }, el("div", { class: "label" }, "Mempool transactions"), mempoolCount),
      el("div", { class: "card" }, el("div", { class: "label" }, "Peers"), el("div", { class: "value", id: "peer-count" }, peers.length)),
      el("div", { class: "card" }, el("div", { class: "label" }, "Tip"), el("div", { class: "mono", id: "tip-hash" }, short(tip.hash, 14)))),
    el("h2", {}, "Latest blocks ", el("span", { class: "muted", id: "live" }, "")),
    el("table", { id: "blocks" },
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Height"), el("th", {}, "Hash"), el("th", { class: "num" }, "Txs"), el("th", {}, "Time"))),
      rows));
  const live = document.getElementById("live");
  const stopTips = subscribe("", "tips", {}, (t) => {
    tipHeight.textContent = t.height;
    document.getElementById("tip-hash").textContent = short(t.hash, 14);
    // A reorg replaces the rows at and above the new blocks' heights.
    for (const row of [...rows.children]) if (Number(row.dataset.height) >= t.height) row.remove();
    const row = blockRow(t);
    row.classList.add("new");
    rows.prepend(row);
    while (rows.children.length > 20) rows.lastChild.remove();
  }, (up) => { live.textContent = up ? "● live" : "○ reconnecting"; });
  const stopMempool = subscribe("", "mempool", {}, (m) => { mempoolCount.textContent = m.count; });
  stopLive = () => { stopTips(); stopMempool(); };
}

/** A height as people type one: digits, at most 20 (a u64), not a 64-digit hash. */
const isHeight = (text) => /^\d{1,20}$/.test(text);

async function blockPage(id) {
  const block = await api("", "block_get", isHeight(id) ? { height: id } : { hash: id });
  show(
    el("h2", {}, `Block ${block.height}`),
    fields([
      ["Hash", el("span", { class: "mono" }, block.hash), "block-hash"],
      ["Height", block.height, "block-height"],
      ["Previous", block.height > 0 ? blockLink(block.prev_hash, block.prev_hash) : "—"],
      ["Time", `${new Date(block.timestamp_ms).toISOString()} (${ago(block.timestamp_ms)})`],
      ["Miner", addressLink(block.miner)],
      ["Status", `${block.main_chain ? "main chain" : "side branch"}, ${block.confirmations} confirmations`],
      ["Size", `${block.size} bytes`],
      ["Nonce", block.nonce],
    ]),
    el("h2", {}, `Transactions (${block.txs.length})`),
    table(["Txid", "From", "To", "Amount#", "Fee#"], block.txs.map((tx) => el("tr", {},
      el("td", {}, txLink(tx.txid)), el("td", {}, addressLink(tx.from)), el("td", {}, addressLink(tx.to)),
      el("td", { class: "num" }, coins(tx.amount)), el("td", { class: "num" }, coins(tx.fee))))));
}

async function txPage(txid) {
  const found = await api("", "tx_get", { txid });
  if (found.status === "unknown") throw new Error(`no transaction ${txid} on this node`);
  const tx = found.tx;
  const render = (status, confirmations, height, hash) => show(
    el("h2", {}, "Transaction"),
    fields([
      ["Txid", el("span", { class: "mono" }, tx.txid), "tx-id"],
      ["Status", el("span", { class: `status ${status}` }, status), "tx-status"],
      ["Amount", `${coins(tx.amount)} coins`, "tx-amount"],
      ["Fee", `${coins(tx.fee)} coins`, "tx-fee"],
      ["From", addressLink(tx.from)],
      ["To", addressLink(tx.to)],
      ["Nonce", tx.nonce],
      ["Block", height !== null && height !== undefined ? blockLink(hash, `${height}`) : "—"],
      ["Confirmations", confirmations ?? 0, "tx-confirmations"],
    ]));
  render(found.status, found.confirmations, found.height, found.block_hash);
  // Follows it live: pending → confirmed, and deeper.
  stopLive = subscribe("", "address", { address: tx.from, confirmations: 100 }, (event) => {
    if (event.txid !== tx.txid) return;
    if (event.event === "confirmed") render("confirmed", event.confirmations, event.height, event.block_hash);
    else render(event.event, 0, null, null);
  });
}

const PAGE = 25;

async function addressPage(address, cursors) {
  const cursor = cursors[cursors.length - 1];
  const [account, history] = await Promise.all([
    api("", "account_get", { address }),
    api("", "account_history", { address, limit: PAGE, cursor }),
  ]);
  const entries = [...(cursor ? [] : history.pending), ...history.txs];
  const rows = entries.map((e) => el("tr", {},
    el("td", {}, e.txid ? txLink(e.txid) : el("span", { class: "muted" }, "block reward")),
    el("td", { class: "num" }, e.height !== undefined && e.height !== null ? blockLink(e.height, String(e.height)) : el("span", { class: "status pending" }, "pending")),
    el("td", {}, e.kind === "reward" ? "in" : e.from === address && e.to === address ? "self" : e.from === address ? "out" : "in"),
    el("td", {}, e.from && e.from !== address ? addressLink(e.from) : e.to && e.to !== address ? addressLink(e.to) : "—"),
    el("td", { class: "num" }, coins(e.amount))));
  const prev = el("button", { id: "prev-page", onclick: () => go(() => addressPage(address, cursors.slice(0, -1))) }, "← Newer");
  const next = el("button", { id: "next-page", onclick: () => go(() => addressPage(address, [...cursors, history.next_cursor])) }, "Older →");
  prev.disabled = cursors.length <= 1;
  next.disabled = !history.next_cursor;
  show(
    el("h2", {}, "Address"),
    fields([
      ["Address", el("span", { class: "mono" }, address), "address"],
      ["Balance", `${coins(account.balance)} coins`, "balance"],
      ["Nonce", account.nonce],
      ["Pending", account.pending.count],
    ]),
    el("h2", {}, "History ", el("span", { class: "muted", id: "page-number" }, `page ${cursors.length}`)),
    table(["Txid", "Height#", "Dir", "Counterparty", "Amount#"], rows, "history"),
    el("div", { class: "pager" }, prev, next));
  stopLive = subscribe("", "address", { address }, () => {
    // Something moved: the first page shows it; later pages stay as they are.
    if (cursors.length === 1) go(() => addressPage(address, cursors));
  });
}

async function mempoolPage() {
  const list = await api("", "mempool_txs", { limit: 100 });
  show(
    el("h2", {}, `Mempool (${list.count} transactions)`),
    table(["Txid", "From", "To", "Amount#", "Fee#", "Waiting"], list.txs.map((tx) => el("tr", {},
      el("td", {}, txLink(tx.txid)), el("td", {}, addressLink(tx.from)), el("td", {}, addressLink(tx.to)),
      el("td", { class: "num" }, coins(tx.amount)), el("td", { class: "num" }, coins(tx.fee)),
      el("td", {}, `${Math.round(tx.age_ms / 1000)} s`))), "mempool"));
  stopLive = subscribe("", "mempool", {}, (m) => { if (m.count !== list.count) go(mempoolPage); });
}

async function peersPage() {
  const peers = await api("", "net_peers");
  show(
    el("h2", {}, `Peers (${peers.length})`),
    table(["Peer id", "Address", "Direction", "Height#", "Score#"], peers.map((p) => el("tr", {},
      el("td", { class: "mono" }, short(p.peer_id, 16)), el("td", { class: "mono" }, p.addr),
      el("td", {}, p.inbound ? "in" : "out"), el("td", { class: "num" }, p.height ?? "—"),
      el("td", { class: "num" }, p.score))), "peers"));
  stopLive = subscribe("", "peers", {}, () => go(peersPage));
}

async function search(query) {
  const q = query.trim();
  // A hash first: 64 hex digits may all be decimal digits too.
  if (/^[0-9a-f]{64}$/i.test(q)) {
    const hash = q.toLowerCase();
    const tx = await api("", "tx_get", { txid: hash });
    if (tx.status !== "unknown") return `#/tx/${hash}`;
    const block = await api("", "block_get", { hash }).catch(() => null);
    if (block) return `#/block/${hash}`;
    throw new Error(`no block or transaction ${hash} on this node`);
  }
  if (isHeight(q)) return `#/block/${q}`;
  if (info && q.startsWith(info.address_prefix + "1")) return `#/address/${q}`;
  throw new Error(`"${q}" is not a height, a block hash, a txid or an address of this chain`);
}

let generation = 0;
async function go(render) {
  stopLive();
  stopLive = () => {};
  const mine = ++generation;
  try {
    await render();
  } catch (error) {
    if (mine === generation) failure(error);
  }
}

function route() {
  const [, page, id] = window.location.hash.split("/");
  switch (page) {
    case "block": return go(() => blockPage(decodeURIComponent(id)));
    case "tx": return go(() => txPage(decodeURIComponent(id)));
    case "address": return go(() => addressPage(decodeURIComponent(id), [undefined]));
    case "mempool": return go(mempoolPage);
    case "peers": return go(peersPage);
    default: return go(home);
  }
}

document.getElementById("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    window.location.hash = await search(document.getElementById("search-input").value);
  } catch (error) {
    failure(error);
  }
});
window.addEventListener("hashchange", route);
api("", "node_info").then((i) => {
  info = i;
  document.getElementById("chain").textContent = i.chain_id;
}).catch(() => {});
route();
