/**
 * The page's libp2p node (it cannot live in the service worker: shared/PLATFORM-NOTES.md "libp2p in the browser"):
 * WebSockets to Node peers, WebRTC to other browsers (signalled through a circuit relay), the circuit relay v2
 * transport (reservations on Node relays, so others can reach us), Noise, Yamux, identify, ping and gossipsub. Its
 * key is the homeserver's ed25519 seed, so its peer ID is the server name (src/net/peer-id.ts).
 *
 * https://github.com/libp2p/js-libp2p/tree/main/packages/transport-webrtc
 */
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { noise } from '@libp2p/noise';
import { ping } from '@libp2p/ping';
import { webRTC } from '@libp2p/webrtc';
import { webSockets } from '@libp2p/websockets';
import { yamux } from '@libp2p/yamux';
import { createLibp2p } from 'libp2p';
import type { HearthLibp2p } from '../../net/libp2p-transport.js';
import { coalescedWrites, HEARTH_GOSSIPSUB, lazyWindowUpdates } from '../../net/libp2p-transport.js';
import { libp2pKeyFromSeed } from '../../net/peer-id.js';

export interface BrowserLibp2pInit {
  /** The homeserver's 32-byte ed25519 seed (from the service worker). */
  seed: Uint8Array;
  /** ICE servers for WebRTC (default none: no public STUN server is contacted; LAN and loopback links work). */
  iceServers?: RTCIceServer[];
}

/**
 * The browser build of libp2p refuses `ws://` and private/loopback addresses by default; a Hearth relay on the LAN
 * or on this machine is exactly what we dial, so every address is allowed (peers are still authenticated by Noise).
 */
const allowAll = { denyDialMultiaddr: async () => false };

/** Builds (does not start) the page's node. */
export async function createBrowserLibp2p(init: BrowserLibp2pInit): Promise<HearthLibp2p> {
  return createLibp2p({
    start: false,
    privateKey: await libp2pKeyFromSeed(init.seed),
    // '/p2p-circuit': take reservations on relays we connect to; '/webrtc': accept WebRTC dials signalled through them.
    addresses: { listen: ['/p2p-circuit', '/webrtc'] },
    transports: [webSockets(), webRTC({ rtcConfiguration: { iceServers: init.iceServers ?? [] } }), circuitRelayTransport()],
    // As the Node peer does (src/node/p2p.ts): one socket write per noise message (see coalescedWrites), and a yamux
    // window update per half window rather than per frame received (see lazyWindowUpdates). Both only reshape what
    // this node writes, so they interoperate with peers that do neither; WebRTC links bring their own encryption and
    // muxing, and the wrappers leave streams they do not recognise as they are.
    connectionEncrypters: [coalescedWrites(noise())],
    streamMuxers: [lazyWindowUpdates(yamux())],
    connectionGater: allowAll,
    services: {
      identify: identify(),
      ping: ping(),
      // The settings the Node peers use (unsigned gossip: see HEARTH_GOSSIPSUB); a mismatch drops every message.
      pubsub: gossipsub({ ...HEARTH_GOSSIPSUB }),
    },
  }) as unknown as Promise<HearthLibp2p>;
}
