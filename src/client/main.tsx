/// <reference types="vite/client" />
/**
 * Entry point of the page: start the in-page homeserver (the service worker), then the chat client, which talks
 * to it through the standard Client-Server API at this page's origin.
 */
import { render } from 'preact';
import { startNetworkLeadership } from '../browser/p2p/leader.js';
import type { NetworkLeadership } from '../browser/p2p/leader.js';
import { ensureHomeserver } from '../browser/register-sw.js';
import { serviceWorkerFetch } from '../browser/sw-fetch.js';
import { App } from './app.js';
import './styles.css';

function Fatal({ message }: { message: string }) {
  return (
    <div class="first-run">
      <div class="card first-run-card" role="alert">
        <h1>Hearth cannot start here</h1>
        <p>{message}</p>
        <p class="muted">Open this page in a current browser over https (or on localhost).</p>
      </div>
    </div>
  );
}

async function homeserverAnswers(): Promise<boolean> {
  try {
    const r = await fetch('/_matrix/client/versions');
    return r.ok;
  } catch {
    return false;
  }
}

async function boot(): Promise<void> {
  const root = document.getElementById('app')!;
  // The client talks to the in-page homeserver by messages to the worker (a fraction of a fetch's cost); with no
  // worker of ours (a page served by `hearth start` without one) it uses plain fetch.
  let clientFetch: typeof serviceWorkerFetch | undefined = serviceWorkerFetch;
  try {
    await ensureHomeserver();
    // Federation for the in-page homeserver: one tab (the elected leader) runs the libp2p node for all of them.
    // Kept on globalThis so the status page and tests can reach it.
    (globalThis as { hearthNetwork?: NetworkLeadership }).hearthNetwork = startNetworkLeadership({ logger: console });
  } catch (e) {
    clientFetch = undefined;
    // No in-page homeserver (no service worker here): the server that sent this page may be one (`hearth start`).
    if (!(await homeserverAnswers())) {
      render(<Fatal message={(e as Error).message} />, root);
      return;
    }
  }
  root.textContent = '';
  render(<App baseUrl={location.origin} fetch={clientFetch} />, root);
}

void boot();
