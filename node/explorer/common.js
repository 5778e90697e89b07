// Shared by the explorer and the dashboard: the node's public API, its WebSocket of
// subscriptions, and formatting. Plain modules: no build step.

export const COIN_DECIMALS = 8;

/** Calls a public method of the node at `base` ("" for this page's node). */
export async function api(base, method, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) query.set(name, String(value));
  }
  const url = `${base}/explorer/api/${method}${query.size ? "?" + query : ""}`;
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch {
    // The browser says "Failed to fetch": the node is not there to answer.
    throw new Error(`the node at ${base || window.location.host} does not answer (down, or unreachable)`);
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

/**
 * Follows `topic` on the node at `base` (an http URL, or "" for this page's node),
 * calling `onResult` with each notification's result; reconnects after a drop.
 * Returns a function that stops it.
 */
export function subscribe(base, topic, params, onResult, onState = () => {}) {
  let socket;
  let stopped = false;
  const origin = base || window.location.origin;
  const connect = () => {
    socket = new WebSocket(origin.replace(/^http/, "ws") + "/explorer/ws");
    socket.onopen = () => {
      onState(true);
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "subscribe", params: { topic, ...params } }));
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.method === "subscription") onResult(data.params.result);
    };
    socket.onclose = () => {
      onState(false);
      if (!stopped) setTimeout(connect, 1000);
    };
  };
  connect();
  return () => {
    stopped = true;
    socket.close();
  };
}

/** Digits in groups of three: "1234567" → "1,234,567". */
function grouped(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A whole number (a height, a count) with thousands separators. */
export function num(value) {
  return value === null || value === undefined ? "—" : grouped(String(value));
}

/** Base units (a decimal string) as coins, e.g. "150000000000" → "1,500". */
export function coins(units) {
  const value = BigInt(units);
  const scale = 10n ** BigInt(COIN_DECIMALS);
  const whole = grouped((value / scale).toString());
  const fraction = (value % scale).toString().padStart(COIN_DECIMALS, "0").replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : `${whole}`;
}

export function short(hash, n = 10) {
  return hash && hash.length > 2 * n ? `${hash.slice(0, n)}…${hash.slice(-4)}` : hash;
}

export function ago(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

/** A span of time, in words: 95000 → "1 min 35 s". */
export function duration(ms) {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

/** Builds an element: el("td", {class: "x"}, "text", child, ...). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

/** Puts `text` on the clipboard (the older way where the clipboard API is not allowed). */
async function toClipboard(text) {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    const area = el("textarea", { style: "position:fixed;opacity:0" });
    area.value = text;
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("the browser would not copy");
  }
}

/**
 * A button that copies `text` (a hash, an address). Its look comes from CSS, so the text
 * of the element it sits beside stays the value alone.
 */
export function copyButton(text) {
  const button = el("button", { class: "copy", type: "button", title: "copy", "aria-label": "copy", "data-copy": text });
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    event.stopPropagation();
    try {
      await toClipboard(text);
      button.dataset.copied = "yes";
      button.classList.add("copied");
      setTimeout(() => button.classList.remove("copied"), 1500);
    } catch {
      button.classList.add("failed");
    }
  });
  return button;
}
