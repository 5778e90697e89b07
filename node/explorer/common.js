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
  const response = await fetch(url, { cache: "no-store" });
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

/** Base units (a decimal string) as coins, e.g. "150000000" → "1.5". */
export function coins(units) {
  const value = BigInt(units);
  const scale = 10n ** BigInt(COIN_DECIMALS);
  const whole = value / scale;
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
