// Checks in the browser what the node shows of an address: its balance and nonce against
// the state root of the block the node names, with WebCrypto's SHA-256 (docs/protocol.md,
// "The state commitment"). The header is checked to hash to that block's hash and to meet
// its own target; that it is on the chain with the most work is the node's word here (the
// wallet checks that too: it keeps the whole chain of headers).
import { api } from "./common.js";

const ZERO = new Uint8Array(32);
const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

function unhex(text) {
  if (typeof text !== "string" || text.length % 2 || /[^0-9a-f]/i.test(text)) throw new Error("an answer that is not hex");
  return new Uint8Array(text.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
}

async function sha256(...parts) {
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { data.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

function u64le(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value), true);
  return out;
}

const readU64 = (bytes, at) => new DataView(bytes.buffer, bytes.byteOffset + at, 8).getBigUint64(0, true);
const leaf = (a) => sha256(Uint8Array.of(2), a.address, u64le(a.balance), u64le(a.nonce));
const node = (l, r) => sha256(Uint8Array.of(3), l, r);
const bit = (address, d) => (address[d >> 3] >> (7 - (d & 7))) & 1;

// bech32m (BIP 350): an address's 32 bytes (the node already checked its checksum).
const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
function addressBytes(text) {
  const data = [...text.slice(text.lastIndexOf("1") + 1)].map((c) => CHARSET.indexOf(c));
  let acc = 0, bits = 0;
  const out = [];
  for (const v of data.slice(0, -6)) {
    acc = (acc << 5) | v; bits += 5;
    if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff); }
  }
  return new Uint8Array(out);
}

/** Borsh `AccountProof { siblings: Vec<[32]>, end: enum { Empty, Leaf { address, (u64, u64) } } }`. */
function decodeProof(bytes) {
  const bad = () => new Error("a proof that does not decode");
  if (bytes.length < 5) throw bad();
  const count = new DataView(bytes.buffer).getUint32(0, true);
  if (count > 256 || bytes.length < 4 + 32 * count + 1) throw bad();
  const siblings = [];
  let at = 4;
  for (let i = 0; i < count; i++, at += 32) siblings.push(bytes.slice(at, at + 32));
  const kind = bytes[at++];
  if (kind === 0 && at === bytes.length) return { siblings, end: null };
  if (kind === 1 && at + 48 === bytes.length) {
    return { siblings, end: { address: bytes.slice(at, at + 32), balance: readU64(bytes, at + 32), nonce: readU64(bytes, at + 40) } };
  }
  throw bad();
}

/** Whether the hash (big-endian) meets the compact target `bits` (Bitcoin's form). */
function meetsTarget(hash, bits) {
  const size = bits >>> 24, mantissa = BigInt(bits & 0x7fffff);
  if (bits & 0x800000 || mantissa === 0n) return false;
  const target = size <= 3 ? mantissa >> BigInt(8 * (3 - size)) : mantissa << BigInt(8 * (size - 3));
  return BigInt("0x" + hex(hash)) <= target;
}

/**
 * What the node's proof says `address` holds, checked against the state root of the header
 * of the block it names: {height, balance, nonce} (decimal strings). Throws saying what
 * does not hold.
 */
export async function provedAccount(address) {
  const answer = await api("", "account_proof", { address });
  const { headers } = await api("", "headers_get", { from: answer.height, count: 1 });
  const header = unhex(headers[0] ?? "");
  if (header.length !== 160) throw new Error(`no 160-byte header for block ${answer.height}`);
  const hash = await sha256(await sha256(header));
  if (hex(hash) !== answer.block_hash) throw new Error(`the header of block ${answer.height} does not hash to the block the proof names`);
  const bits = new DataView(header.buffer).getUint32(148, true);
  if (!meetsTarget(hash, bits)) throw new Error(`the header of block ${answer.height} does not meet its own target`);
  const stateRoot = header.slice(76, 108);
  const target = addressBytes(address);
  const proof = decodeProof(unhex(answer.proof));
  const depth = proof.siblings.length;
  if (proof.end && [...Array(depth).keys()].some((d) => bit(proof.end.address, d) !== bit(target, d))) {
    throw new Error("the proof ends at an account off the address's path");
  }
  let h = proof.end ? await leaf(proof.end) : ZERO;
  for (let i = depth - 1; i >= 0; i--) {
    h = bit(target, i) ? await node(proof.siblings[i], h) : await node(h, proof.siblings[i]);
  }
  if (hex(h) !== hex(stateRoot)) throw new Error(`the proof does not lead to the state root of block ${answer.height}`);
  const here = proof.end && hex(proof.end.address) === hex(target);
  return { height: answer.height, balance: String(here ? proof.end.balance : 0n), nonce: String(here ? proof.end.nonce : 0n) };
}
