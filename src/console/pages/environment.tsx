/**
 * One environment: its snapshots a page at a time (filters go to the API, so 10,000 snapshots
 * cost one page), take / pin / delete / download / restore, restore logs, a chart, the estimate.
 */
import { useClient, useMutation, useQuery } from '@urql/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { SnapshotChart } from '../components/chart.tsx';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from '../components/errors.tsx';
import { OperationProgress } from '../components/progress.tsx';
import { RestoreDialog } from '../components/restore-dialog.tsx';
import { WatchedOperation } from '../components/watched-operation.tsx';
import { bytes, duration, idempotencyKey, when } from '../format.ts';
import {
  ConsoleCreateSnapshotDocument,
  ConsoleDeleteSnapshotDocument,
  ConsoleDownloadDocument,
  ConsoleEnvironmentChartDocument,
  ConsoleEnvironmentDocument,
  ConsoleEstimateDocument,
  ConsolePinSnapshotDocument,
  ConsoleRestoreLogsDocument,
  ConsoleSnapshotCopiesDocument,
  ConsoleUnpinSnapshotDocument,
  type ConsoleSnapshotFieldsFragment,
  type SnapshotFilter,
  type SnapshotInclude,
  type SnapshotKind,
  type SnapshotStatus,
} from '../generated/graphql.ts';
import { useConsole } from '../state.ts';
import { trackOperation } from '../tracked.ts';

export const PAGE_SIZE = 20;

type Page = { after?: string; before?: string };

export function pageVariables(page: Page) {
  if (page.before) return { last: PAGE_SIZE, before: page.before };
  return { first: PAGE_SIZE, after: page.after };
}

function TakeSnapshot({ environmentId }: { environmentId: string }) {
  const [what, setWhat] = useState<'BOTH' | SnapshotInclude>('BOTH');
  const [label, setLabel] = useState('');
  const [started, setStarted] = useState<string | null>(null);
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const [res, create] = useMutation(ConsoleCreateSnapshotDocument);
  return (
    <form
      class="inline-form"
      id="take-snapshot"
      onSubmit={async (e) => {
        e.preventDefault();
        setProblem(null);
        const includes: SnapshotInclude[] = what === 'BOTH' ? ['DB', 'FILES'] : [what];
        const r = await create({ input: { environmentId, includes, label: label.trim() || undefined, idempotencyKey: idempotencyKey() } });
        const out = r.data?.createSnapshot;
        const p = fromCombined(r.error) ?? typedError(out);
        if (p) return setProblem(p);
        if (out?.__typename === 'SnapshotOperationPayload') {
          trackOperation(out.operation.id);
          setStarted(out.operation.id);
          setLabel('');
        }
      }}
    >
      <select name="includes" value={what} onChange={(e) => setWhat(e.currentTarget.value as typeof what)} aria-label="What to capture">
        <option value="BOTH">Database and files</option>
        <option value="DB">Database only</option>
        <option value="FILES">Files only</option>
      </select>
      <input name="label" placeholder="Label (optional)" value={label} onInput={(e) => setLabel(e.currentTarget.value)} />
      <button type="submit" class="write" disabled={res.fetching}>
        Take snapshot
      </button>
      <ErrorBox problem={problem} />
      {started ? (
        <div class="started" id="started-operation">
          <WatchedOperation id={started} />
        </div>
      ) : null}
    </form>
  );
}

function Downloads({ snapshot }: { snapshot: ConsoleSnapshotFieldsFragment }) {
  const client = useClient();
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const variants: Array<[string, 'DATABASE_ONLY' | 'FILES_ONLY' | 'DATABASE_AND_FILES']> = [];
  if (snapshot.includes.includes('DB')) variants.push(['DB', 'DATABASE_ONLY']);
  if (snapshot.includes.includes('FILES')) variants.push(['Files', 'FILES_ONLY']);
  if (variants.length === 2) variants.push(['Both', 'DATABASE_AND_FILES']);
  // Links are signed and expire: each click asks for a fresh one.
  async function download(variant: 'DATABASE_ONLY' | 'FILES_ONLY' | 'DATABASE_AND_FILES') {
    setProblem(null);
    const r = await client.query(ConsoleDownloadDocument, { id: snapshot.id, variant }, { requestPolicy: 'network-only' }).toPromise();
    const d = r.data?.snapshot?.download;
    const p = fromCombined(r.error) ?? typedError(d);
    if (p) return setProblem(p);
    if (d?.__typename === 'Download') location.assign(d.url);
  }
  return (
    <span class="downloads">
      {variants.map(([label, v]) => (
        <button type="button" class="link" data-variant={v} onClick={() => void download(v)}>
          ⬇ {label}
        </button>
      ))}
      <ErrorBox problem={problem} />
    </span>
  );
}

function Copies({ id }: { id: string }) {
  const [res] = useQuery({ query: ConsoleSnapshotCopiesDocument, variables: { id } });
  return (
    <div class="copies">
      <ErrorBox problem={fromCombined(res.error)} />
      {res.data?.snapshot?.copies.map((c) => (
        <div>
          {c.destination.name}: <span class={`status ${c.status.toLowerCase()}`}>{c.status}</span> {bytes(c.sizeBytes)} ({bytes(c.addedBytes)} added)
          {c.error ? <span class="error"> {c.error}</span> : null}
        </div>
      ))}
    </div>
  );
}

function SnapshotRow({ s, environment }: { s: ConsoleSnapshotFieldsFragment; environment: { id: string; name: string } }) {
  const { abilities } = useConsole();
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const [pinning, setPinning] = useState(false);
  const [pinLabel, setPinLabel] = useState('');
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [restoring, setRestoring] = useState(false);
  const [showCopies, setShowCopies] = useState(false);
  const [, pin] = useMutation(ConsolePinSnapshotDocument);
  const [, unpin] = useMutation(ConsoleUnpinSnapshotDocument);
  const [, del] = useMutation(ConsoleDeleteSnapshotDocument);
  const ready = s.status === 'READY';
  async function act(run: () => Promise<{ data?: Record<string, unknown> | null; error?: import('@urql/core').CombinedError }>, field: string) {
    setProblem(null);
    const r = await run();
    const out = r.data?.[field] as { __typename?: string; code?: string; message?: string; operation?: { id: string } } | undefined;
    const p = fromCombined(r.error) ?? typedError(out);
    if (p) setProblem(p);
    if (out?.operation) trackOperation(out.operation.id);
    return !p;
  }
  return (
    <>
      <tr data-snapshot={s.id} data-label-text={s.label ?? ''}>
        <td data-label="Created">{when(s.createdAt)}</td>
        <td data-label="Label">
          {s.label ?? <span class="muted">—</span>}
          {s.pinned ? (
            <span class="pin" title={s.pinLabel ?? ''}>
              pinned{s.pinLabel ? `: ${s.pinLabel}` : ""}
            </span>
          ) : null}
        </td>
        <td data-label="Kind">{s.kind}</td>
        <td data-label="Includes">{s.includes.join(' + ')}</td>
        <td data-label="Status">
          <span class={`status ${s.status.toLowerCase()}`}>{s.status}</span>
          {s.error ? <div class="error">{s.error}</div> : null}
        </td>
        <td data-label="Size">{bytes(s.sizeBytes)}</td>
        <td data-label="Added">{bytes(s.addedBytes)}</td>
        <td data-label="Duration">{duration(s.durationMs)}</td>
        <td class="actions">
          {ready ? <Downloads snapshot={s} /> : null}
          <button type="button" class="link" onClick={() => setShowCopies(!showCopies)}>
            copies
          </button>
          {abilities.write && ready && !s.pinned ? (
            <button type="button" class="write" data-action="pin" onClick={() => setPinning(!pinning)}>
              Pin
            </button>
          ) : null}
          {abilities.write && s.pinned ? (
            <button type="button" class="write" data-action="unpin" onClick={() => void act(() => unpin({ input: { id: s.id } }), 'unpinSnapshot')}>
              Unpin
            </button>
          ) : null}
          {abilities.write && ready ? (
            <button type="button" class="write" data-action="restore" onClick={() => setRestoring(true)}>
              Restore…
            </button>
          ) : null}
          {abilities.write && (ready || s.status === 'FAILED' || s.status === 'DAMAGED') ? (
            confirmDelete ? (
              <button
                type="button"
                class="write danger"
                data-action="confirm-delete"
                onClick={async () => {
                  setConfirmDelete(false);
                  await act(() => del({ input: { id: s.id } }), 'deleteSnapshot');
                }}
              >
                Really delete
              </button>
            ) : (
              <button type="button" class="write" data-action="delete" onClick={() => setConfirmDelete(true)}>
                Delete
              </button>
            )
          ) : null}
        </td>
      </tr>
      {pinning || problem || showCopies ? (
        <tr class="detail">
          <td colSpan={9}>
            {pinning ? (
              <form
                class="inline-form"
                onSubmit={async (e) => {
                  e.preventDefault();
                  if (await act(() => pin({ input: { id: s.id, label: pinLabel.trim() || undefined } }), 'pinSnapshot')) setPinning(false);
                }}
              >
                <input name="pinLabel" placeholder="Why keep it (optional)" value={pinLabel} onInput={(e) => setPinLabel(e.currentTarget.value)} />
                <button type="submit" class="write" data-action="confirm-pin">
                  Pin snapshot
                </button>
              </form>
            ) : null}
            <ErrorBox problem={problem} />
            {showCopies ? <Copies id={s.id} /> : null}
          </td>
        </tr>
      ) : null}
      {restoring ? <RestoreDialog snapshot={s} defaultTarget={environment} onClose={() => setRestoring(false)} /> : null}
    </>
  );
}

function Filters({ value, onChange }: { value: SnapshotFilter; onChange(f: SnapshotFilter): void }) {
  const [label, setLabel] = useState(value.labelContains ?? '');
  return (
    <form
      class="filters"
      onSubmit={(e) => {
        e.preventDefault();
        onChange({ ...value, labelContains: label.trim() || undefined });
      }}
    >
      <select aria-label="Status" onChange={(e) => onChange({ ...value, statuses: e.currentTarget.value ? [e.currentTarget.value as SnapshotStatus] : undefined })}>
        <option value="">Any status</option>
        {['READY', 'CREATING', 'FAILED', 'DELETING', 'DAMAGED'].map((s) => (
          <option value={s}>{s}</option>
        ))}
      </select>
      <select aria-label="Kind" onChange={(e) => onChange({ ...value, kinds: e.currentTarget.value ? [e.currentTarget.value as SnapshotKind] : undefined })}>
        <option value="">Any kind</option>
        {['MANUAL', 'SCHEDULED', 'PRE_DEPLOY', 'SAFETY'].map((s) => (
          <option value={s}>{s}</option>
        ))}
      </select>
      <select aria-label="Pinned" onChange={(e) => onChange({ ...value, pinned: e.currentTarget.value === '' ? undefined : e.currentTarget.value === 'yes' })}>
        <option value="">Pinned or not</option>
        <option value="yes">Pinned</option>
        <option value="no">Not pinned</option>
      </select>
      <input placeholder="Label contains" value={label} onInput={(e) => setLabel(e.currentTarget.value)} />
      <button type="submit">Filter</button>
    </form>
  );
}

function RestoreLogs({ environmentId }: { environmentId: string }) {
  const { reconnects } = useConsole();
  const [res, refetch] = useQuery({ query: ConsoleRestoreLogsDocument, variables: { id: environmentId } });
  useEffect(() => {
    if (reconnects) refetch({ requestPolicy: 'network-only' });
  }, [reconnects]);
  const logs = res.data?.environment?.restoreLogs;
  return (
    <section class="card" id="restore-logs">
      <h2>Restore log</h2>
      <ErrorBox problem={fromCombined(res.error)} />
      {logs && logs.totalCount === 0 ? <p class="muted">No restore yet.</p> : null}
      <ul class="restore-logs">
        {logs?.edges.map(({ node: l }) => (
          <li data-restore-log={l.id} data-status={l.status}>
            <strong>{when(l.createdAt)}</strong> {l.snapshot ? `snapshot ${l.snapshot.label ?? when(l.snapshot.createdAt)}` : 'a snapshot'} from{' '}
            {l.sourceEnvironment?.name ?? '—'} into {l.targetEnvironment.name} ({l.strategy}, {l.includes.join(' + ')}):{' '}
            <span class={`status ${l.status.toLowerCase()}`}>{l.status}</span>
            {l.safetySnapshot ? <span class="muted"> · safety snapshot taken</span> : null}
            {l.previousDatabaseName ? <span class="muted"> · previous database kept as {l.previousDatabaseName}</span> : null}
            {l.error ? <div class="error">{l.error}</div> : null}
            {l.status === 'RUNNING' || l.status === 'QUEUED' ? <OperationProgress op={l.operation} /> : null}
          </li>
        ))}
      </ul>
    </section>
  );
}

function Estimate({ environmentId }: { environmentId: string }) {
  const [res] = useQuery({ query: ConsoleEstimateDocument, variables: { id: environmentId } });
  const e = res.data?.estimateSnapshotSize;
  if (e?.__typename !== 'SnapshotSizeEstimate') return <ErrorBox problem={fromCombined(res.error) ?? typedError(e)} />;
  return (
    <p class="muted" id="estimate">
      A snapshot now: about {bytes(e.databaseBytes)} of database, {bytes(e.filesBytes)} in {e.fileCount} files.
    </p>
  );
}

export function EnvironmentPage({ id }: { id: string }) {
  const { abilities, reconnects } = useConsole();
  const [filter, setFilter] = useState<SnapshotFilter>({});
  // The cursors of the pages walked through, so "Newer" goes back exactly one page.
  const [pages, setPages] = useState<Page[]>([{}]);
  const page = pages[pages.length - 1];
  const [res, refetch] = useQuery({ query: ConsoleEnvironmentDocument, variables: { id, filter, ...pageVariables(page) } });
  const [chart] = useQuery({ query: ConsoleEnvironmentChartDocument, variables: { id } });
  useEffect(() => {
    if (reconnects) refetch({ requestPolicy: 'network-only' });
  }, [reconnects]);
  // While a page is re-read (after the cache dropped a stale list), keep showing the last one:
  // the forms and dialogs under it keep their state.
  const shown = useRef(res.data);
  if (res.data) shown.current = res.data;
  const env = shown.current?.environment;
  if (res.data && !env) return <ErrorBox problem={{ code: 'ENVIRONMENT_NOT_FOUND', message: 'This environment does not exist or this key may not see it' }} />;
  const conn = env?.snapshots;
  return (
    <section>
      <ErrorBox problem={fromCombined(res.error)} />
      {env ? (
        <>
          <h1>
            {env.name} <span class="muted">{env.project.name} · {env.type.toLowerCase()}</span>
          </h1>
          <p>
            <a href={`#/schedule/${encodeURIComponent(env.id)}`}>Schedule and retention</a>
          </p>
          <Estimate environmentId={env.id} />
          {abilities.write ? <TakeSnapshot environmentId={env.id} /> : null}
          <div class="card">
            <h2>Snapshots ({conn?.totalCount ?? 0})</h2>
            <Filters
              value={filter}
              onChange={(f) => {
                setFilter(f);
                setPages([{}]);
              }}
            />
            <table class="list" id="snapshots">
              <thead>
                <tr>
                  <th>Created</th>
                  <th>Label</th>
                  <th>Kind</th>
                  <th>Includes</th>
                  <th>Status</th>
                  <th>Size</th>
                  <th>Added</th>
                  <th>Duration</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {conn?.edges.map(({ node }) => (
                  <SnapshotRow key={node.id} s={node} environment={env} />
                ))}
              </tbody>
            </table>
            <div class="pager">
              <button type="button" disabled={pages.length < 2} onClick={() => setPages(pages.slice(0, -1))}>
                ← Newer
              </button>
              <button type="button" disabled={!conn?.pageInfo.hasNextPage} onClick={() => setPages([...pages, { after: conn!.pageInfo.endCursor ?? undefined }])}>
                Older →
              </button>
            </div>
          </div>
          <div class="card">
            <h2>Bytes added and duration per snapshot</h2>
            <SnapshotChart points={chart.data?.environment?.snapshots.edges.map((e) => e.node) ?? []} />
          </div>
          <RestoreLogs environmentId={env.id} />
        </>
      ) : res.fetching ? (
        <p class="muted">Loading…</p>
      ) : null}
    </section>
  );
}
