// The explorer: one page, routed by its path (/explorer/block/12, /explorer/tx/<id>, ...;
// the older #/block/12 links still work), so every page has a link of its own.
import { api, subscribe, coins, num, short, ago, duration, el, copyButton } from "./common.js";
import { provedAccount } from "./proof.js";

const BASE = "/explorer";
const view = document.getElementById("view");
let info = null;
let stopLive = () => {};

/** A link to another page of the explorer, followed without reloading. */
function link(path, text, attributes = {}) {
  return el("a", { ...attributes, href: BASE + path, "data-route": "" }, text);
}

const blockLink = (id, text) => link(`/block/${id}`, text ?? short(id, 12));
const heightLink = (height) => link(`/block/${height}`, num(height));
const txLink = (txid) => link(`/tx/${txid}`, short(txid, 12), { class: "mono" });
const addressLink = (address) => link(`/address/${address}`, short(address, 14), { class: "mono" });
/** A hash or an address in full, with a button that copies it. */
const copyable = (text) => el("span", { class: "copyable" }, el("span", { class: "mono" }, text), copyButton(text));

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
    el("td", { class: "num" }, heightLink(block.height)),
    el("td", { class: "mono" }, blockLink(block.hash)),
    el("td", { class: "num" }, num(block.tx_count ?? block.txs?.length ?? 0)),
    el("td", {}, ago(block.timestamp_ms)));
}

/** Says so when no block has come for several block times (a stopped miner, a stuck chain). */
function stallWarning(tipTimestampMs) {
  if (!info) return null;
  const late = Date.now() - tipTimestampMs;
  if (late < 5 * info.target_block_time_ms) return null;
  return el("p", { class: "warning", id: "stalled" },
    `No new block for ${duration(late)}; this chain aims at one every ${duration(info.target_block_time_ms)}. ` +
    "Is any node mining, and connected?");
}

async function home() {
  const tip = await api("", "chain_tip");
  const [mempool, peers] = await Promise.all([api("", "mempool_info"), api("", "net_peers")]);
  const heights = [];
  for (let h = tip.height; h >= 0 && h > tip.height - 20; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((height) => api("", "block_get", { height })));
  const rows = el("tbody", {}, blocks.map((b) => blockRow({ ...b, tx_count: b.txs.length })));
  const tipHeight = el("div", { class: "value", id: "tip-height" }, num(tip.height));
  const mempoolCount = el("div", { class: "value", id: "mempool-count" }, num(mempool.count));
  const warning = el("div", { id: "warnings" }, stallWarning(tip.timestamp_ms));
  show(
    warning,
    el("div", { class: "cards" },
      el("div", { class: "card" }, el("div", { class: "label" }, "Height"), tipHeight),
      el("div", { class: "card" }, el("div", { class: "label" }, "Mempool transactions"), mempoolCount),
      el("div", { class: "card" }, el("div", { class: "label" }, "Peers"), el("div", { class: "value", id: "peer-count" }, num(peers.length))),
      el("div", { class: "card" }, el("div", { class: "label" }, "Tip"), el("div", { class: "mono", id: "tip-hash" }, short(tip.hash, 14)))),
    el("h2", {}, "Latest blocks ", el("span", { class: "muted", id: "live" }, "")),
    el("table", { id: "blocks" },
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Height"), el("th", {}, "Hash"), el("th", { class: "num" }, "Txs"), el("th", {}, "Time"))),
      rows));
  const live = document.getElementById("live");
  let tipTime = tip.timestamp_ms;
  const stopTips = subscribe("", "tips", {}, (t) => {
    tipHeight.textContent = num(t.height);
    tipTime = t.timestamp_ms;
    warning.replaceChildren();
    document.getElementById("tip-hash").textContent = short(t.hash, 14);
    // A reorg replaces the rows at and above the new blocks' heights.
    for (const row of [...rows.children]) if (Number(row.dataset.height) >= t.height) row.remove();
    const row = blockRow(t);
    row.classList.add("new");
    rows.prepend(row);
    while (rows.children.length > 20) rows.lastChild.remove();
  }, (up) => { live.textContent = up ? "● live" : "○ reconnecting"; });
  const stopMempool = subscribe("", "mempool", {}, (m) => { mempoolCount.textContent = num(m.count); });
  // The warning comes (and grows) while no block does.
  const timer = setInterval(() => warning.replaceChildren(stallWarning(tipTime) ?? ""), 1000);
  stopLive = () => { stopTips(); stopMempool(); clearInterval(timer); };
}

async function blockPage(id) {
  const block = await api("", "block_get", isHeight(id) ? { height: id } : { hash: id });
  show(
    el("h2", {}, `Block ${num(block.height)}`),
    fields([
      ["Hash", copyable(block.hash), "block-hash"],
      ["Height", num(block.height), "block-height"],
      ["Previous", block.height > 0 ? el("span", { class: "copyable" }, blockLink(block.prev_hash, block.prev_hash), copyButton(block.prev_hash)) : "—"],
      ["Time", `${new Date(block.timestamp_ms).toISOString()} (${ago(block.timestamp_ms)})`],
      ["Miner", el("span", { class: "copyable" }, addressLink(block.miner), copyButton(block.miner))],
      ["Status", `${block.main_chain ? "main chain" : "side branch"}, ${num(block.confirmations)} confirmations`],
      ["Size", `${num(block.size)} bytes`],
      ["Nonce", block.nonce],
    ]),
    el("h2", {}, `Transactions (${num(block.txs.length)})`),
    block.txs.length === 0
      ? el("p", { class: "muted", id: "no-txs" }, "No transactions: this block pays its miner only.")
      : table(["Txid", "From", "To", "Amount#", "Fee#"], block.txs.map((tx) => el("tr", {},
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
      ["Txid", copyable(tx.txid), "tx-id"],
      ["Status", el("span", { class: `status ${status}` }, status), "tx-status"],
      ["Amount", `${coins(tx.amount)} coins`, "tx-amount"],
      ["Fee", `${coins(tx.fee)} coins`, "tx-fee"],
      ["From", el("span", { class: "copyable" }, addressLink(tx.from), copyButton(tx.from))],
      ["To", el("span", { class: "copyable" }, addressLink(tx.to), copyButton(tx.to))],
      ["Nonce", num(tx.nonce)],
      ["Block", height !== null && height !== undefined ? blockLink(hash, num(height)) : "—"],
      ["Confirmations", num(confirmations ?? 0), "tx-confirmations"],
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
  const [account, history, totals] = await Promise.all([
    api("", "account_get", { address }),
    api("", "account_history", { address, limit: PAGE, cursor }),
    // Too many entries to add up is not a reason to show nothing else.
    api("", "account_totals", { address }).catch(() => null),
  ]);
  const total = (field) => (totals ? `${coins(totals[field])} coins` : el("span", { class: "muted" }, "too many to add up"));
  const entries = [...(cursor ? [] : history.pending), ...history.txs];
  const rows = entries.map((e) => el("tr", {},
    el("td", {}, e.txid ? txLink(e.txid) : el("span", { class: "muted" }, "block reward")),
    el("td", { class: "num" }, e.height !== undefined && e.height !== null ? heightLink(e.height) : el("span", { class: "status pending" }, "pending")),
    el("td", {}, e.kind === "reward" ? "in" : e.from === address && e.to === address ? "self" : e.from === address ? "out" : "in"),
    el("td", {}, e.from && e.from !== address ? addressLink(e.from) : e.to && e.to !== address ? addressLink(e.to) : "—"),
    el("td", { class: "num" }, coins(e.amount))));
  const prev = el("button", { id: "prev-page", onclick: () => go(() => addressPage(address, cursors.slice(0, -1))) }, "← Newer");
  const next = el("button", { id: "next-page", onclick: () => go(() => addressPage(address, [...cursors, history.next_cursor])) }, "Older →");
  prev.disabled = cursors.length <= 1;
  next.disabled = !history.next_cursor;
  const allocated = totals && totals.allocated !== "0" ? [["Given at genesis", `${coins(totals.allocated)} coins`, "allocated"]] : [];
  show(
    el("h2", {}, "Address"),
    fields([
      ["Address", copyable(address), "address"],
      ["Balance", `${coins(account.balance)} coins`, "balance"],
      ...allocated,
      ["Received", total("received"), "received"],
      ["Sent", total("sent"), "sent"],
      ["Nonce", num(account.nonce)],
      ["Pending", num(account.pending.count)],
      ["Proof", el("span", { class: "muted" }, "checking…"), "proof"],
    ]),
    el("h2", {}, "History ", el("span", { class: "muted", id: "page-number" }, `page ${cursors.length}`)),
    entries.length === 0
      ? el("p", { class: "muted", id: "no-history" }, "Nothing yet: no payment to or from this address.")
      : table(["Txid", "Height#", "Dir", "Counterparty", "Amount#"], rows, "history"),
    el("div", { class: "pager" }, prev, next));
  stopLive = subscribe("", "address", { address }, () => {
    // Something moved: the first page shows it; later pages stay as they are.
    if (cursors.length === 1) go(() => addressPage(address, cursors));
  });
  checkProof(address, account, () => go(() => addressPage(address, cursors)));
}

/**
 * Proves the balance and nonce shown against a block's state root, in this browser, and
 * says so under "Proof". A block that came between the two answers makes them differ
 * honestly: then the page is shown again with the node's new answer.
 */
async function checkProof(address, shown, again) {
  const field = document.getElementById("proof");
  const say = (text, status) => field.replaceChildren(el("span", { class: `status ${status}` }, text));
  const matches = (a, proved) => String(a.balance) === proved.balance && String(a.nonce) === proved.nonce;
  try {
    const proved = await provedAccount(address);
    if (matches(shown, proved)) return say(`verified against block ${num(proved.height)}`, "confirmed");
    const now = await api("", "account_get", { address });
    const newer = await provedAccount(address);
    if (matches(now, newer)) return field.isConnected && again();
    say(`failed: the node shows ${coins(now.balance)} coins (nonce ${now.nonce}), its proof at block ${num(newer.height)} says ${coins(newer.balance)} (nonce ${newer.nonce})`, "unknown");
  } catch (error) {
    say(`failed: ${error.message}`, "unknown");
  }
}

async function mempoolPage() {
  const list = await api("", "mempool_txs", { limit: 100 });
  show(
    el("h2", {}, `Mempool (${num(list.count)} transactions)`),
    list.count === 0
      ? el("p", { class: "muted", id: "mempool-empty" }, "The mempool is empty: every transaction this node knows of is in a block.")
      : table(["Txid", "From", "To", "Amount#", "Fee#", "Waiting"], list.txs.map((tx) => el("tr", {},
        el("td", {}, txLink(tx.txid)), el("td", {}, addressLink(tx.from)), el("td", {}, addressLink(tx.to)),
        el("td", { class: "num" }, coins(tx.amount)), el("td", { class: "num" }, coins(tx.fee)),
        el("td", {}, `${Math.round(tx.age_ms / 1000)} s`))), "mempool"));
  stopLive = subscribe("", "mempool", {}, (m) => { if (m.count !== list.count) go(mempoolPage); });
}

async function peersPage() {
  const peers = await api("", "net_peers");
  show(
    el("h2", {}, `Peers (${num(peers.length)})`),
    peers.length === 0
      ? el("p", { class: "muted", id: "no-peers" }, "No peers: this node is on its own.")
      : table(["Peer id", "Address", "Direction", "Height#", "Score#", "Ping#"], peers.map((p) => el("tr", {},
        el("td", {}, el("span", { class: "copyable" }, el("span", { class: "mono" }, short(p.peer_id, 16)), copyButton(p.peer_id))),
        el("td", { class: "mono" }, p.addr),
        el("td", {}, p.inbound ? "in" : "out"), el("td", { class: "num" }, num(p.height)),
        el("td", { class: "num" }, p.score), el("td", { class: "num" }, p.rtt_ms === null || p.rtt_ms === undefined ? "—" : `${p.rtt_ms} ms`))), "peers"));
  stopLive = subscribe("", "peers", {}, () => go(peersPage));
}

/** A height as people type one: digits, at most 20 (a u64), not a 64-digit hash. */
function isHeight(text) {
  return /^\d{1,20}$/.test(text);
}

async function search(query) {
  const q = query.trim().replaceAll(",", "");
  // A hash first: 64 hex digits may all be decimal digits too.
  if (/^[0-9a-f]{64}$/i.test(q)) {
    const hash = q.toLowerCase();
    const tx = await api("", "tx_get", { txid: hash });
    if (tx.status !== "unknown") return `/tx/${hash}`;
    const block = await api("", "block_get", { hash }).catch(() => null);
    if (block) return `/block/${hash}`;
    throw new Error(`no block or transaction ${hash} on this node`);
  }
  if (isHeight(q)) return `/block/${q}`;
  if (info && q.startsWith(info.address_prefix + "1")) return `/address/${q}`;
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

/** Shows `path` (e.g. "/block/3") and puts it in the address bar. */
function navigate(path) {
  window.history.pushState({}, "", BASE + path);
  route();
}

function route() {
  // An older link (#/block/3) becomes the path it stands for.
  if (window.location.hash.startsWith("#/")) {
    window.history.replaceState({}, "", BASE + window.location.hash.slice(1));
  }
  const path = window.location.pathname.slice(BASE.length);
  const [, page, ...rest] = path.split("/");
  const id = decodeURIComponent(rest.join("/"));
  switch (page) {
    case "block": return go(() => blockPage(id));
    case "tx": return go(() => txPage(id));
    case "address": return go(() => addressPage(id, [undefined]));
    case "mempool": return go(mempoolPage);
    case "peers": return go(peersPage);
    default: return go(home);
  }
}

// Links within the explorer change the page without reloading it; the address bar
// follows, and back and forward work.
document.addEventListener("click", (event) => {
  const anchor = event.target.closest("a[data-route]");
  if (!anchor || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(anchor.getAttribute("href").slice(BASE.length));
});
window.addEventListener("popstate", route);
window.addEventListener("hashchange", route);
document.getElementById("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    navigate(await search(document.getElementById("search-input").value));
  } catch (error) {
    failure(error);
  }
});
api("", "node_info").then((i) => {
  info = i;
  document.getElementById("chain").textContent = i.chain_id;
}).catch(() => {});
route();
