/**
 * Placeholder page until the in-page homeserver and the Preact client land (issue 4). It shows honestly what the
 * page can do today: ask the Node peer that served it which Client-Server API versions it speaks.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';

function App() {
  const [versions, setVersions] = useState<string>('asking the homeserver…');
  useEffect(() => {
    fetch('/_matrix/client/versions')
      .then((r) => r.json())
      .then((j: { versions?: string[] }) => setVersions((j.versions ?? []).join(', ') || 'none'))
      .catch((e: unknown) => setVersions(`unreachable (${String(e)})`));
  }, []);
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', maxWidth: '40rem', margin: '3rem auto', padding: '0 1rem' }}>
      <h1>Hearth</h1>
      <p>A peer-to-peer Matrix homeserver that lives in a web page.</p>
      <p>
        This build is the foundation: the Matrix core (events, signing, authorization, state resolution) and the Node
        peer. The in-page homeserver and chat client are not built yet.
      </p>
      <p>
        Client-Server API versions served by this peer: <strong data-testid="versions">{versions}</strong>
      </p>
    </main>
  );
}

render(<App />, document.getElementById('app')!);
