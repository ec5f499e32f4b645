/**
 * The console's shell: sign-in with an API key, the navigation, and the page for the URL's hash
 * (#/env/<id>, #/operations…; the key is never part of the URL).
 */
import { Provider, useQuery, useSubscription } from '@urql/preact';
import type { Client } from '@urql/core';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { createConsoleClient } from './client.ts';
import { ErrorBox, fromCombined } from './components/errors.tsx';
import { ConsoleAlertCountsDocument, ConsoleAlertCreatedDocument, ConsoleEnvironmentsDocument, ConsoleEnvironmentActivityDocument, ConsoleViewerDocument } from './generated/graphql.ts';
import { AlertsPage } from './pages/alerts.tsx';
import { DestinationsPage } from './pages/destinations.tsx';
import { EnvironmentPage } from './pages/environment.tsx';
import { OperationsPage } from './pages/operations.tsx';
import { OverviewPage } from './pages/overview.tsx';
import { SchedulePage } from './pages/schedule.tsx';
import { abilitiesOf, forgetKey, storedKey, storeKey, type Abilities } from './session.ts';
import { StateContext, useConsole } from './state.ts';
import { trackOperation } from './tracked.ts';

interface Session {
  client: Client;
  dispose(): void;
  abilities: Abilities;
  keyName: string;
  organization: string;
}

function useHash(): string {
  const [hash, setHash] = useState(location.hash.slice(1) || '/');
  useEffect(() => {
    const on = () => setHash(location.hash.slice(1) || '/');
    addEventListener('hashchange', on);
    // The effect runs after the first paint: a hash changed in between fired no event we heard.
    on();
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

export function Root() {
  const [session, setSession] = useState<Session | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [reconnects, setReconnects] = useState(0);

  function signOut(message: string | null) {
    forgetKey();
    setSession((s) => {
      s?.dispose();
      return null;
    });
    setNotice(message);
  }

  async function signIn(key: string) {
    setBusy(true);
    setNotice(null);
    let refused: string | null = null;
    const { client, dispose } = createConsoleClient(key, {
      unauthenticated: (message) => {
        refused = message;
        signOut(`Signed out: ${message}`);
      },
      reconnected: () => setReconnects((n) => n + 1),
    });
    const result = await client.query(ConsoleViewerDocument, {}, { requestPolicy: 'network-only' }).toPromise();
    setBusy(false);
    const viewer = result.data?.viewer;
    if (!viewer) {
      dispose();
      forgetKey();
      const p = fromCombined(result.error);
      setNotice(refused ?? (p ? `${p.code}: ${p.message}` : 'The API did not answer'));
      return;
    }
    storeKey(key);
    setSession({ client, dispose, abilities: abilitiesOf(viewer.scopes), keyName: viewer.apiKey.name, organization: viewer.organization.name });
  }

  useEffect(() => {
    const key = storedKey();
    if (key) void signIn(key);
  }, []);

  if (!session) return <SignIn busy={busy} notice={notice} onKey={signIn} />;
  return (
    <Provider value={session.client}>
      <Shell session={session} reconnects={reconnects} onSignOut={() => signOut(null)} />
    </Provider>
  );
}

function SignIn({ busy, notice, onKey }: { busy: boolean; notice: string | null; onKey(key: string): void }) {
  const [key, setKey] = useState('');
  return (
    <main class="signin">
      <h1>Backplane</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (key.trim()) onKey(key.trim());
        }}
      >
        <label>
          API key
          <input name="apiKey" type="password" autoComplete="off" value={key} onInput={(e) => setKey(e.currentTarget.value)} placeholder="bp_…" />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {notice ? (
          <p class="error" role="alert" id="signin-notice">
            {notice}
          </p>
        ) : null}
        <p class="muted">The key stays in this tab (sessionStorage) until you sign out or close it.</p>
      </form>
    </main>
  );
}

/** Follows every visible environment's activity so operations started elsewhere show up live. */
function ActivityWatcher({ environmentId }: { environmentId: string }) {
  useSubscription({ query: ConsoleEnvironmentActivityDocument, variables: { environmentId } }, (_prev, event) => {
    const op = event.environmentActivity.operation;
    if (op && (op.status === 'QUEUED' || op.status === 'RUNNING')) trackOperation(op.id, environmentId);
    return event;
  });
  return null;
}

function AlertBadge() {
  const { reconnects } = useConsole();
  const [counts, refetch] = useQuery({ query: ConsoleAlertCountsDocument });
  useSubscription({ query: ConsoleAlertCreatedDocument });
  useEffect(() => {
    if (reconnects) refetch({ requestPolicy: 'network-only' });
  }, [reconnects]);
  const unread = counts.data?.alertCounts.unread ?? 0;
  return unread ? (
    <span class="badge" id="unread-alerts" aria-label={`${unread} unread alerts`}>
      {unread}
    </span>
  ) : null;
}

function Shell({ session, reconnects, onSignOut }: { session: Session; reconnects: number; onSignOut(): void }) {
  const hash = useHash();
  const [envs] = useQuery({ query: ConsoleEnvironmentsDocument });
  const state = useMemo(() => ({ abilities: session.abilities, reconnects, navigate: (p: string) => (location.hash = p) }), [session, reconnects]);
  const [, page, id] = hash.split('/');
  const link = (to: string, label: string, extra?: preact.ComponentChildren) => (
    <a href={`#${to}`} class={hash === to || (to !== '/' && hash.startsWith(to)) ? 'active' : ''}>
      {label}
      {extra}
    </a>
  );
  let body;
  if (page === 'env' && id) body = <EnvironmentPage id={decodeURIComponent(id)} />;
  else if (page === 'schedule' && id) body = <SchedulePage environmentId={decodeURIComponent(id)} />;
  else if (page === 'operations') body = <OperationsPage />;
  else if (page === 'alerts') body = <AlertsPage />;
  else if (page === 'destinations') body = <DestinationsPage />;
  else body = <OverviewPage />;
  return (
    <StateContext.Provider value={state}>
      <header class="top">
        <a class="brand" href="#/">
          Backplane
        </a>
        <nav>
          {link('/', 'Overview')}
          {link('/operations', 'Operations')}
          {link('/alerts', 'Alerts', <AlertBadge />)}
          {session.abilities.admin ? link('/destinations', 'Destinations') : null}
        </nav>
        <span class="who" title={session.organization}>
          {session.keyName} · {session.abilities.admin ? 'admin' : session.abilities.write ? 'write' : 'read only'}
          <button type="button" class="link" onClick={onSignOut}>
            Sign out
          </button>
        </span>
      </header>
      <ErrorBox problem={fromCombined(envs.error)} />
      {envs.data?.environments.edges.map((e) => <ActivityWatcher key={e.node.id} environmentId={e.node.id} />)}
      <main class="page">{body}</main>
    </StateContext.Provider>
  );
}
