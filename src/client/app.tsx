/**
 * The app: first run (no session) or the chat (session in localStorage). Layout: the room list and the open
 * screen side by side on a desktop, one at a time on a phone (the URL hash says which).
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { MatrixApi } from './api/client.js';
import type { FetchFn } from './api/http.js';
import { localpart } from './lib/ids.js';
import { clearSession, loadSession, saveSession, signInAgain } from './session.js';
import type { Session } from './session.js';
import { ClientStore } from './store/client-store.js';
import { AccountView } from './ui/account-view.js';
import { Avatar, CopyButton, Icon } from './ui/common.js';
import { AppContext, useApp } from './ui/context.js';
import type { AppContextValue, DialogKind } from './ui/context.js';
import { Dialog } from './ui/dialogs.js';
import { FirstRun } from './ui/first-run.js';
import { navigate, useRoute } from './ui/hooks.js';
import { RoomView } from './ui/room-view.js';
import { Sidebar } from './ui/room-list.js';

export function App({ baseUrl, fetch }: { baseUrl: string; fetch?: FetchFn }) {
  const [session, setSession] = useState<Session | undefined>(() => loadSession());
  // Another tab signed in or out: follow it.
  useEffect(() => {
    const on = (e: StorageEvent) => {
      if (e.key === null || e.key.startsWith('hearth.session')) setSession(loadSession());
    };
    addEventListener('storage', on);
    return () => removeEventListener('storage', on);
  }, []);
  if (!session) {
    return (
      <FirstRun
        baseUrl={baseUrl}
        onSession={(s) => {
          saveSession(s);
          navigate({ name: 'home' });
          setSession(s);
        }}
      />
    );
  }
  return (
    <ChatApp
      key={session.accessToken}
      session={session}
      fetch={fetch}
      onSession={(s) => {
        if (s) saveSession(s);
        else clearSession();
        setSession(s);
      }}
    />
  );
}

function ChatApp({ session, fetch, onSession }: { session: Session; fetch?: FetchFn; onSession: (s: Session | undefined) => void }) {
  const route = useRoute();
  const [dialog, setDialog] = useState<DialogKind>();
  const [displayName, setDisplayName] = useState(localpart(session.userId));
  const store = useMemo(
    () =>
      new ClientStore({
        api: new MatrixApi({ baseUrl: session.baseUrl, accessToken: session.accessToken, fetch }),
        userId: session.userId,
        deviceId: session.deviceId,
        onLoggedOut: () => void signInAgain(session, fetch).then(onSession),
      }),
    [session.accessToken],
  );

  useEffect(() => {
    store.start();
    store.api
      .profile(session.userId)
      .then((p) => p.displayname && setDisplayName(p.displayname))
      .catch(() => undefined);
    const online = () => store.reconnect();
    const visible = () => document.visibilityState === 'visible' && store.reconnect();
    addEventListener('online', online);
    document.addEventListener('visibilitychange', visible);
    return () => {
      removeEventListener('online', online);
      document.removeEventListener('visibilitychange', visible);
      void store.stop();
    };
  }, [store]);

  const ctx: AppContextValue = {
    store,
    session,
    displayName,
    setDisplayName,
    openDialog: setDialog,
    logout: () => {
      store.api.logout().catch(() => undefined);
      onSession(undefined);
    },
  };
  const view = route.name === 'home' ? 'list' : 'main';
  return (
    <AppContext.Provider value={ctx}>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <div class={`shell view-${view}`}>
        <Sidebar route={route} />
        <main class="main" id="main" tabIndex={-1}>
          {route.name === 'room' ? (
            <RoomView key={route.roomId} roomId={route.roomId} />
          ) : route.name === 'account' ? (
            <AccountView />
          ) : (
            <Home isNew={session.isNew === true} onDismiss={() => onSession({ ...session, isNew: false })} />
          )}
        </main>
      </div>
      {dialog && <Dialog kind={dialog} onClose={() => setDialog(undefined)} />}
    </AppContext.Provider>
  );
}

/** The empty main area on a desktop (and the first-run welcome): who I am and what to do next. */
function Home({ isNew, onDismiss }: { isNew: boolean; onDismiss: () => void }) {
  const { session, displayName, openDialog } = useApp();
  return (
    <section class="home" aria-labelledby="home-title">
      <div class="card center-card home-card">
        <Avatar id={session.userId} name={displayName} size="lg" />
        <h2 id="home-title">{isNew ? `Welcome, ${displayName}!` : `Hello, ${displayName}`}</h2>
        <p class="muted">Your Matrix ID — share it so people can reach you:</p>
        <p class="row center wrap">
          <code class="mxid" data-testid="home-matrix-id">
            {session.userId}
          </code>
          <CopyButton text={session.userId} />
        </p>
        <div class="home-actions">
          <button type="button" class="btn btn-soft" onClick={() => openDialog('create')}>
            <Icon name="plus" /> New room
          </button>
          <button type="button" class="btn btn-soft" onClick={() => openDialog('dm')}>
            <Icon name="chat" /> Direct chat
          </button>
          <button type="button" class="btn btn-soft" onClick={() => openDialog('join')}>
            <Icon name="enter" /> Join a room
          </button>
        </div>
        {isNew && (
          <button type="button" class="link small" onClick={onDismiss}>
            Got it
          </button>
        )}
      </div>
    </section>
  );
}
