// The testnet dashboard: every node of ?node=URL&node=URL... (this page's node when none
// is given), polled every second through its public API. A node that does not answer
// within ANSWER_MS is shown as down.
import { api, short, ago, el } from "./common.js";

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

async function look(node) {
  try {
    const [tip, peers, mempool, arrivals] = await within(ANSWER_MS, Promise.all([
      api(node.base, "chain_tip"), api(node.base, "net_peers"), api(node.base, "mempool_info"), api(node.base, "block_arrivals"),
    ]));
    return { ...node, up: true, tip, peers: peers.length, mempool: mempool.count, arrivals };
  } catch (error) {
    return { ...node, up: false, error: String(error.message || error) };
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
    el("td", { class: "num" }, s.up ? s.tip.height : "—"),
    el("td", { class: "mono" }, s.up ? short(s.tip.hash, 10) : el("span", { class: "muted" }, s.error)),
    el("td", {}, branchOf.get(s.name) ?? "—"),
    el("td", { class: "num" }, s.up ? s.peers : "—"),
    el("td", { class: "num" }, s.up ? s.mempool : "—"),
    el("td", {}, s.up ? ago(s.tip.timestamp_ms) : "—")));
  document.querySelector("#nodes tbody").replaceChildren(...rows);
  const upCount = states.filter((s) => s.up).length;
  document.getElementById("summary").textContent =
    `${upCount} of ${states.length} up · ${groups.length <= 1 ? "one branch" : `${groups.length} branches`}`;
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

/** For each recent block, a bar per node: how long after its timestamp the node had it. */
function renderDelays(states) {
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
  const max = Math.max(50, ...delays.flat().filter((d) => d !== null));
  const groupWidth = Math.max(40, up.length * 12 + 16);
  const chartHeight = 140;
  const svg = svgEl("svg", { width: 60 + blocks.length * groupWidth, height: chartHeight + 50, id: "delay-chart" });
  svg.append(svgEl("text", { x: 0, y: 12 }, `${Math.round(max)} ms`));
  svg.append(svgEl("text", { x: 0, y: chartHeight + 4 }, "0"));
  blocks.forEach((b, i) => {
    const x0 = 60 + i * groupWidth;
    delays[i].forEach((d, j) => {
      if (d === null) return;
      const h = Math.max(1, (d / max) * (chartHeight - 10));
      const bar = svgEl("rect", { x: x0 + j * 12, y: chartHeight - h, width: 10, height: h, fill: up[j].colour });
      bar.append(svgEl("title", {}, `${up[j].name}: block ${b.height} after ${d} ms`));
      svg.append(bar);
    });
    svg.append(svgEl("text", { x: x0, y: chartHeight + 18 }, String(b.height)));
  });
  const legend = el("div", { class: "muted" }, up.map((s) => el("span", { style: `color:${s.colour};margin-right:1rem` }, `■ ${s.name}`)));
  container.replaceChildren(svg, legend);
}

async function poll() {
  const started = Date.now();
  const states = await Promise.all(nodes.map(look));
  const groups = await branches(states);
  renderNodes(states, groups);
  renderFork(groups);
  renderDelays(states);
  setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
}

poll();
