/** Small hooks: store subscription, hash routing, clock ticks. */
import { useEffect, useLayoutEffect, useReducer, useRef, useState } from 'preact/hooks';
import type { ClientStore, StoreSnapshot } from '../store/client-store.js';

/** Re-renders on every store change and returns the current snapshot. */
export function useSnapshot(store: Pick<ClientStore, 'snapshot' | 'subscribe'>): StoreSnapshot {
  const [, bump] = useReducer((n: number, _: void) => n + 1, 0);
  const snapshot = store.snapshot;
  const rendered = useRef(snapshot);
  rendered.current = snapshot;
  useLayoutEffect(() => {
    const unsubscribe = store.subscribe(() => bump());
    // A change between this render and the subscription notified nobody here: a view mounted just now (a room
    // opened right after joining it) would show the old snapshot until some later change. Render again instead.
    if (store.snapshot !== rendered.current) bump();
    return unsubscribe;
  }, [store]);
  return snapshot;
}

export type Route = { name: 'home' } | { name: 'room'; roomId: string } | { name: 'account' };

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#\/?/, '');
  if (h.startsWith('room/')) {
    try {
      return { name: 'room', roomId: decodeURIComponent(h.slice(5)) };
    } catch {
      return { name: 'home' };
    }
  }
  if (h === 'account') return { name: 'account' };
  return { name: 'home' };
}

export function routeHref(r: Route): string {
  if (r.name === 'room') return `#/room/${encodeURIComponent(r.roomId)}`;
  if (r.name === 'account') return '#/account';
  return '#/';
}

export function navigate(r: Route): void {
  location.hash = routeHref(r);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useLayoutEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    // As useSnapshot: a change before the listener was there is not missed.
    if (routeHref(parseRoute(location.hash)) !== routeHref(route)) on();
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** The current time, refreshed every `ms` (for "Today"/"Yesterday" labels that change at midnight). */
export function useNow(ms = 60_000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
