/**
 * The status area: is the homeserver answering, how much this browser stores, and which peers we talk to.
 * Peers are filled by federation (a later issue): PeerList takes whatever list it is given.
 */
import { useEffect, useState } from 'preact/hooks';
import { onNetworkStatus } from '../../browser/p2p/leader.js';
import { formatBytes } from '../lib/format.js';
import { serverName } from '../lib/ids.js';
import { useApp } from './context.js';
import { useSnapshot } from './hooks.js';

export interface Peer {
  id: string;
  label?: string;
  connected: boolean;
}

export function PeerList({ peers }: { peers: readonly Peer[] }) {
  if (peers.length === 0) return <p class="muted" data-testid="peers">no peers yet</p>;
  return (
    <ul class="peer-list" data-testid="peers">
      {peers.map((p) => (
        <li key={p.id}>
          <span class={`dot ${p.connected ? 'dot-ok' : 'dot-off'}`} aria-hidden="true" />
          <span class="peer-label">{p.label ?? p.id}</span>
          <span class="sr-only">{p.connected ? 'connected' : 'not connected'}</span>
        </li>
      ))}
    </ul>
  );
}

/** The peers the network host (the leader tab, src/browser/p2p) is connected to, with their transport. */
function useNetworkPeers(): Peer[] {
  const [peers, setPeers] = useState<Peer[]>([]);
  useEffect(
    () =>
      onNetworkStatus((msg) =>
        setPeers(
          msg.peers.map((p) => ({
            id: p.id,
            label: `${p.serverName ? `${p.serverName.slice(0, 12)}…` : `${p.id.slice(0, 12)}… (relay)`} · ${p.transport}`,
            connected: true,
          })),
        ),
      ),
    [],
  );
  return peers;
}

type HsState = { state: 'checking' } | { state: 'up'; versions: string[] } | { state: 'down'; error: string };

function useHomeserver(): HsState {
  const { store } = useApp();
  const snap = useSnapshot(store);
  const [hs, setHs] = useState<HsState>({ state: 'checking' });
  useEffect(() => {
    const ctl = new AbortController();
    const check = () =>
      store.api
        .versions(ctl.signal)
        .then((v) => setHs({ state: 'up', versions: v.versions ?? [] }))
        .catch((e: unknown) => !ctl.signal.aborted && setHs({ state: 'down', error: (e as Error).message }));
    check();
    const t = setInterval(check, 30_000);
    return () => (ctl.abort(), clearInterval(t));
  }, [store, snap.syncStatus]);
  return hs;
}

function useStorageEstimate(): StorageEstimate | undefined {
  const [est, setEst] = useState<StorageEstimate>();
  useEffect(() => {
    let live = true;
    const read = () => navigator.storage?.estimate?.().then((e) => live && setEst(e)).catch(() => undefined);
    read();
    const t = setInterval(read, 30_000);
    return () => ((live = false), clearInterval(t));
  }, []);
  return est;
}

/** Where the homeserver runs: the service worker of this page, or the server the page came from. */
function hostKind(): string {
  return typeof navigator !== 'undefined' && navigator.serviceWorker?.controller ? 'in this browser' : `at ${location.host}`;
}

/** One line at the bottom of the sidebar. */
export function StatusBar() {
  const { store } = useApp();
  const snap = useSnapshot(store);
  const hs = useHomeserver();
  const est = useStorageEstimate();
  const ok = hs.state === 'up' && snap.syncStatus === 'online';
  const text =
    hs.state === 'down' || snap.syncStatus === 'offline'
      ? 'Homeserver not answering, retrying…'
      : snap.syncStatus === 'error'
        ? `Sync problem: ${snap.syncError ?? 'retrying'}`
        : ok
          ? 'Homeserver running'
          : 'Connecting…';
  return (
    <footer class="status-bar" data-testid="status-bar">
      <span class={`dot ${ok ? 'dot-ok' : hs.state === 'checking' || snap.syncStatus === 'connecting' ? 'dot-wait' : 'dot-bad'}`} aria-hidden="true" />
      <span role="status" data-testid="homeserver-status">
        {text}
      </span>
      {est?.usage !== undefined && <span class="muted status-extra">· {formatBytes(est.usage)} stored</span>}
    </footer>
  );
}

/** The full status section of the account screen. */
export function StatusArea({ peers }: { peers?: readonly Peer[] }) {
  const { session } = useApp();
  const live = useNetworkPeers();
  peers ??= live;
  const hs = useHomeserver();
  const est = useStorageEstimate();
  return (
    <dl class="status-area" data-testid="status-area">
      <dt>Homeserver</dt>
      <dd>
        {hs.state === 'up' ? (
          <>
            <span class="dot dot-ok" aria-hidden="true" /> Running {hostKind()} — <code>{serverName(session.userId)}</code>
            <div class="muted small">Matrix {hs.versions.slice(-1)[0] ?? ''}</div>
          </>
        ) : hs.state === 'down' ? (
          <>
            <span class="dot dot-bad" aria-hidden="true" /> Not answering ({hs.error})
          </>
        ) : (
          'Checking…'
        )}
      </dd>
      <dt>Storage</dt>
      <dd data-testid="storage-used">
        {est?.usage !== undefined ? `${formatBytes(est.usage)} used` : 'unknown'}
        {est?.quota ? <span class="muted"> of {formatBytes(est.quota)} available</span> : null}
      </dd>
      <dt>Peers</dt>
      <dd>
        <PeerList peers={peers} />
      </dd>
    </dl>
  );
}
