// A stock js-libp2p peer that follows an Apiary node's blocks with only the settings in
// docs/protocol.md: TCP + noise + yamux, gossipsub without signatures, the message id a
// double SHA-256 (of the 160-byte header on the blocks topic). Prints one JSON line per
// block: {"hash": ..., "height": ...}. Usage: node follow.mjs MULTIADDR GENESIS COUNT
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { createHash } from 'node:crypto'

const [addr, genesis, countText] = process.argv.slice(2)
const wanted = Number(countText ?? '1')
const HEADER_BYTES = 160
const blocksTopic = `apiary/${genesis}/blocks`
const txsTopic = `apiary/${genesis}/txs`
const sha256d = (bytes) => createHash('sha256').update(createHash('sha256').update(bytes).digest()).digest()

const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictNoSign',
      allowPublishToZeroTopicPeers: true,
      msgIdFn: (message) => new Uint8Array(
        message.topic === blocksTopic && message.data.length >= HEADER_BYTES
          ? sha256d(message.data.subarray(0, HEADER_BYTES))
          : sha256d(message.data)),
    }),
  },
})
node.services.pubsub.subscribe(blocksTopic)
node.services.pubsub.subscribe(txsTopic)
let seen = 0
node.services.pubsub.addEventListener('message', (event) => {
  const { topic, data } = event.detail
  if (topic !== blocksTopic || data.length < HEADER_BYTES) return
  const hash = sha256d(data.subarray(0, HEADER_BYTES)).toString('hex')
  // height: the u64 (little-endian) after the u32 version
  const height = Number(Buffer.from(data.subarray(4, 12)).readBigUInt64LE())
  console.log(JSON.stringify({ hash, height }))
  seen += 1
  if (seen >= wanted) {
    node.stop().then(() => process.exit(0))
  }
})
await node.dial(multiaddr(addr))
console.error(`js-libp2p ${node.peerId.toString()} connected to ${addr}`)
setTimeout(() => { console.error('timed out'); process.exit(2) }, 120_000)
