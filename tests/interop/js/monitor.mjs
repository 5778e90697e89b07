// A stock js-libp2p peer with its connection monitor on (it pings each connection and
// aborts it when a ping fails) and no ping service of its own, so the node's pings to it
// are refused. Stays connected for SECONDS, then prints one JSON line:
// {"closed": connections closed meanwhile, "rtt": the monitor's last round-trip time}.
// Usage: node monitor.mjs MULTIADDR SECONDS
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'

const [addr, secondsText] = process.argv.slice(2)
const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // Pings every second instead of every ten, so a test sees many of them.
  connectionMonitor: { pingInterval: 1000 },
  services: { identify: identify() },
})
let closed = 0
node.addEventListener('connection:close', () => { closed += 1 })
const connection = await node.dial(multiaddr(addr))
console.error(`js-libp2p ${node.peerId.toString()} connected to ${addr}`)
setTimeout(async () => {
  console.log(JSON.stringify({ closed, rtt: connection.rtt ?? null, status: connection.status }))
  await node.stop()
  process.exit(0)
}, Number(secondsText) * 1000)
