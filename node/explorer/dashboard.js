// The testnet dashboard: every node of ?node=URL&node=URL... (this page's node when none
// is given), polled every second through its public API. A node that does not answer
// within ANSWER_MS is shown as down.
import { api, short, ago, duration, num, el } from "./common.js";

const POLL_MS = 1000;
// A node that has not answered within this is shown as down (a loaded machine may take a
// few hundred milliseconds; a dead node never answers).
const ANSWER_MS = 1500;
const BLOCKS_CHARTED = 12;
const COLOURS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

const given = new URLSearchParams(window.location.search).getAll("node");
// Each is URL or NAME@URL (scripts/testnet dashboard names them as its own commands do).
const nodes = (given.length ? given : [window.location.origin]).map((value, i) => {
  const at = value.lastIndexOf("@http");
  return {
    name: at > 0 ? value.slice(0, at) : `node ${i + 1}`,
    base: (at > 0 ? value.slice(at + 1) : value).replace(/\/+$/, ""),
    colour: COLOURS[i % COLOURS.length],
  };
});

const svgNs = "http://www.w3.org/2000/svg";

/** Builds an SVG element with its attributes and text. */
function svgEl(tag, attributes, text) {
  const node = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function within(ms, promise) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("no answer")), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Each chain's target block time, from the first node that tells it. */
let blockTimeMs = null;

async function look(node) {
  try {
    const [tip, peers, mempool, arrivals] = await within(ANSWER_MS, Promise.all([
      api(node.base, "chain_tip"), api(node.base, "net_peers"), api(node.base, "mempool_info"), api(node.base, "block_arrivals"),
    ]));
    if (blockTimeMs === null) {
      api(node.base, "node_info").then((info) => { blockTimeMs = info.target_block_time_ms; }).catch(() => {});
    }
    return { ...node, up: true, tip, peers: peers.length, mempool: mempool.count, arrivals };
  } catch (error) {
    // Why it is down, in a word: it did not answer in time, or nothing answered at all.
    const why = error.message === "no answer" ? `no answer within ${ANSWER_MS / 1000} s` : "not reachable";
    return { ...node, up: false, error: why };
  }
}

/** Groups the up nodes by branch: the same block at the lowest tip height among them. */
async function branches(states) {
  const up = states.filter((s) => s.up);
  if (up.length === 0) return [];
  const floor = Math.min(...up.map((s) => s.tip.height));
  const atFloor = await Promise.all(up.map(async (s) => {
    if (s.tip.height === floor) return s.tip.hash;
    const local = s.arrivals.find((a) => a.height === floor);
    if (local) return local.hash;
    try {
      return (await within(POLL_MS, api(s.base, "block_get", { height: floor }))).hash;
    } catch {
      return null;
    }
  }));
  const groups = new Map();
  up.forEach((s, i) => {
    const key = atFloor[i] ?? `unknown-${s.name}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  });
  return [...groups.values()].map((members, i) => ({
    label: String.fromCharCode(65 + i),
    members,
    tip: members.reduce((best, s) => (s.tip.height > best.tip.height ? s : best)).tip,
  }));
}

function renderNodes(states, groups) {
  const branchOf = new Map();
  for (const g of groups) for (const s of g.members) branchOf.set(s.name, g.label);
  const rows = states.map((s) => el("tr", { "data-node": s.name, "data-state": s.up ? "up" : "down", "data-branch": branchOf.get(s.name) ?? "" },
    el("td", {}, el("span", { style: `color:${s.colour}` }, "■ "), s.name, el("div", { class: "muted mono" }, s.base.replace(/^https?:\/\//, ""))),
    el("td", { class: s.up ? "up" : "down" }, s.up ? "up" : "down"),
    el("td", { class: "num" }, s.up ? num(s.tip.height) : "—"),
    el("td", { class: "mono" }, s.up ? short(s.tip.hash, 10) : el("span", { class: "muted" }, s.error)),
    el("td", {}, branchOf.get(s.name) ?? "—"),
    el("td", { class: "num" }, s.up ? s.peers : "—"),
    el("td", { class: "num" }, s.up ? s.mempool : "—"),
    el("td", {}, s.up ? ago(s.tip.timestamp_ms) : "—")));
  document.querySelector("#nodes tbody").replaceChildren(...rows);
  const upCount = states.filter((s) => s.up).length;
  document.getElementById("summary").textContent =
    `${upCount} of ${states.length} up · ${groups.length <= 1 ? "one branch" : `${groups.length} branches`}`;
  renderStall(states);
}

/** Says so when no node has had a new block for several block times. */
function renderStall(states) {
  const up = states.filter((s) => s.up);
  const newest = Math.max(...up.map((s) => s.tip.timestamp_ms));
  const late = Date.now() - newest;
  const stalled = up.length > 0 && blockTimeMs !== null && late >= 5 * blockTimeMs;
  document.getElementById("warnings").replaceChildren(...(stalled
    ? [el("p", { class: "warning", id: "stalled" },
      `No new block on any node for ${duration(late)}; the chain aims at one every ${duration(blockTimeMs)}. ` +
      "Is a miner running, and connected?")]
    : []));
}

/** A picture of the fork: a common trunk, then one line per branch with its nodes. */
function renderFork(groups) {
  const rowHeight = 34;
  const height = Math.max(1, groups.length) * rowHeight + 12;
  const svg = svgEl("svg", { width: 760, height, id: "fork-picture", role: "img" });
  const trunkEnd = 180;
  const middle = height / 2;
  svg.append(svgEl("line", { x1: 10, y1: middle, x2: trunkEnd, y2: middle, stroke: "#98a2b3", "stroke-width": 4 }));
  svg.append(svgEl("text", { x: 12, y: middle - 9 }, groups.length > 1 ? "common chain" : "chain"));
  groups.forEach((g, i) => {
    const y = 6 + rowHeight * i + rowHeight / 2;
    const colour = g.members[0].colour;
    svg.append(svgEl("path", { d: `M ${trunkEnd} ${middle} C ${trunkEnd + 40} ${middle}, ${trunkEnd + 40} ${y}, ${trunkEnd + 80} ${y} L 420 ${y}`, stroke: colour, "stroke-width": 4, fill: "none" }));
    svg.append(svgEl("circle", { cx: 420, cy: y, r: 6, fill: colour }));
    svg.append(svgEl("text", { x: 434, y: y + 4, "data-branch": g.label },
      `${g.label}: height ${g.tip.height} ${short(g.tip.hash, 8)} — ${g.members.map((m) => m.name).join(", ")}`));
  });
  document.getElementById("fork").replaceChildren(svg);
}

/** Where `ms` sits on the chart's log scale: 0 at 1 ms, 1 at `top` ms. */
function logScale(ms, top) {
  return Math.log10(Math.max(1, ms)) / Math.log10(Math.max(10, top));
}

/**
 * For each recent block, a bar per node: how long after its timestamp the node had it, on
 * a log scale (a delay of seconds and one of milliseconds both stay readable). After a
 * partition each block is labelled with the branch whose nodes had it.
 */
function renderDelays(states, groups) {
  const up = states.filter((s) => s.up);
  const recent = new Map();
  for (const s of up) for (const a of s.arrivals) if (!recent.has(a.hash)) recent.set(a.hash, a);
  const blocks = [...recent.values()].sort((a, b) => b.height - a.height).slice(0, BLOCKS_CHARTED).reverse();
  const container = document.getElementById("delays");
  if (blocks.length === 0) {
    container.replaceChildren(el("p", { class: "muted" }, "no blocks yet"));
    return;
  }
  const delays = blocks.map((b) => up.map((s) => {
    const seen = s.arrivals.find((a) => a.hash === b.hash);
    return seen ? Math.max(0, seen.received_ms - b.timestamp_ms) : null;
  }));
  const branchOf = new Map();
  for (const g of groups) for (const m of g.members) branchOf.set(m.name, g.label);
  const labels = blocks.map((b, i) => {
    if (groups.length <= 1) return "";
    const had = new Set(up.filter((_, j) => delays[i][j] !== null).map((s) => branchOf.get(s.name)));
    return had.size === 1 ? [...had][0] : "";
  });
  // The top of the scale: a power of ten at or above the longest delay.
  const longest = Math.max(10, ...delays.flat().filter((d) => d !== null));
  const top = 10 ** Math.ceil(Math.log10(longest));
  const groupWidth = Math.max(40, up.length * 12 + 16);
  const chartHeight = 140;
  const left = 60;
  const svg = svgEl("svg", { width: left + blocks.length * groupWidth, height: chartHeight + 50, id: "delay-chart", "data-scale": "log" });
  for (let tick = 1; tick <= top; tick *= 10) {
    const y = chartHeight - logScale(tick, top) * (chartHeight - 10);
    svg.append(svgEl("line", { x1: left - 4, y1: y, x2: left + blocks.length * groupWidth, y2: y, stroke: "#e4e7ec" }));
    svg.append(svgEl("text", { x: 0, y: y + 4, class: "tick" }, tick >= 1000 ? `${tick / 1000} s` : `${tick} ms`));
  }
  blocks.forEach((b, i) => {
    const x0 = left + i * groupWidth;
    delays[i].forEach((d, j) => {
      if (d === null) return;
      const h = Math.max(1, logScale(d, top) * (chartHeight - 10));
      const bar = svgEl("rect", { x: x0 + j * 12, y: chartHeight - h, width: 10, height: h, fill: up[j].colour, "data-delay": d });
      bar.append(svgEl("title", {}, `${up[j].name}: block ${b.height} after ${d} ms`));
      svg.append(bar);
    });
    svg.append(svgEl("text", { x: x0, y: chartHeight + 18 }, num(b.height)));
    if (labels[i]) {
      svg.append(svgEl("text", { x: x0, y: chartHeight + 32, class: "branch-label", "data-branch": labels[i] }, labels[i]));
    }
  });
  const legend = el("div", { class: "muted" }, up.map((s) => el("span", { style: `color:${s.colour};margin-right:1rem` }, `■ ${s.name}`)),
    el("span", {}, groups.length > 1 ? "(log scale; under a block, the branch it is on)" : "(log scale)"));
  container.replaceChildren(svg, legend);
}

async function poll() {
  const started = Date.now();
  const states = await Promise.all(nodes.map(look));
  const groups = await branches(states);
  renderNodes(states, groups);
  renderFork(groups);
  renderDelays(states, groups);
  setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
}

poll();
