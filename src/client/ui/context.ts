/** What every screen of the logged-in app can reach. */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Session } from '../session.js';
import type { ClientStore } from '../store/client-store.js';

export type DialogKind = 'create' | 'dm' | 'join';

export interface AppContextValue {
  store: ClientStore;
  session: Session;
  displayName: string;
  setDisplayName: (name: string) => void;
  openDialog: (kind: DialogKind) => void;
  logout: () => void;
}

export const AppContext = createContext<AppContextValue | null>(null);

export function useApp(): AppContextValue {
  const v = useContext(AppContext);
  if (!v) throw new Error('useApp outside AppContext');
  return v;
}
