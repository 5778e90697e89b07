// A third party's state root, written from docs/protocol.md ("The state commitment") alone,
// with WebCrypto's SHA-256 as a browser has it. Recomputes the golden vectors' roots and
// checks their proofs; prints {"checked": N} or exits 1 naming the first mismatch.
// Usage: node state_root.mjs VECTORS_DIR
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2]
const read = (name) => JSON.parse(readFileSync(join(dir, name), 'utf8'))
const hex = (bytes) => Buffer.from(bytes).toString('hex')
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'))
const ZERO = new Uint8Array(32)

async function sha256(...parts) {
  const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { data.set(p, at); at += p.length }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data))
}

function u64le(decimal) {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(decimal), true)
  return out
}

const leaf = (a) => sha256(Uint8Array.of(2), a.address, u64le(a.balance), u64le(a.nonce))
const node = (l, r) => sha256(Uint8Array.of(3), l, r)
const bit = (address, d) => (address[d >> 3] >> (7 - (d & 7))) & 1

async function root(accounts, d = 0) {
  if (accounts.length === 0) return ZERO
  if (accounts.length === 1) return leaf(accounts[0])
  const left = accounts.filter((a) => bit(a.address, d) === 0)
  const right = accounts.filter((a) => bit(a.address, d) === 1)
  return node(await root(left, d + 1), await root(right, d + 1))
}

async function verifyProof(address, proof, expected) {
  let h = proof.end.kind === 'empty' ? ZERO : await leaf({
    address: unhex(proof.end.address), balance: proof.end.balance, nonce: proof.end.nonce,
  })
  for (let i = proof.siblings.length - 1; i >= 0; i--) {
    const sibling = unhex(proof.siblings[i])
    h = bit(address, i) ? await node(sibling, h) : await node(h, sibling)
  }
  return hex(h) === expected
}

// bech32m (BIP 350), enough to read an address's 32 bytes.
const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l'
function bech32mBytes(text) {
  const data = [...text.slice(text.lastIndexOf('1') + 1)].map((c) => CHARSET.indexOf(c))
  let acc = 0, bits = 0
  const out = []
  for (const v of data.slice(0, -6)) {
    acc = (acc << 5) | v; bits += 5
    if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff) }
  }
  return new Uint8Array(out)
}

let checked = 0
function expect(what, ok) {
  if (!ok) { console.error(`mismatch: ${what}`); process.exit(1) }
  checked++
}

const state = read('state.json')
const accounts = state.accounts.map((a) => ({ ...a, address: unhex(a.address) }))
for (const a of accounts) expect(`leaf of ${hex(a.address)}`, hex(await leaf(a)) === a.leaf)
expect('state.json root', hex(await root(accounts)) === state.root)
for (const name of ['proof_present', 'proof_absent_empty', 'proof_absent_other']) {
  const { address, proof } = state[name]
  expect(name, await verifyProof(unhex(address), proof, state.root))
}
// One byte of the proven account changed: the proof must fail.
const forged = structuredClone(state.proof_present.proof)
forged.end.balance = String(BigInt(forged.end.balance) + 1n)
expect('a changed balance fails', !(await verifyProof(unhex(state.proof_present.address), forged, state.root)))

const block = read('block.json')
const after = block.accounts_after.map((a) => ({ ...a, address: bech32mBytes(a.address) }))
expect('block.json state root', hex(await root(after)) === block.state_root)

for (const name of ['devnet-genesis.json']) {
  const genesis = read(name)
  const allocations = genesis.spec.allocations.map((a) => ({
    address: bech32mBytes(a.address), balance: a.amount, nonce: '0',
  }))
  expect(`${name} genesis state root`, hex(await root(allocations)) === genesis.genesis_state_root)
}
console.log(JSON.stringify({ checked }))
