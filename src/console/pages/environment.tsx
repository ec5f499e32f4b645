/**
 * One environment: its snapshots a page at a time (filters go to the API, so 10,000 snapshots
 * cost one page), take / pin / delete / download / restore, restore logs, a chart, the estimate.
 */
import { useMutation, useQuery } from '@urql/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { SnapshotChart } from '../components/chart.tsx';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from '../components/errors.tsx';
import { OperationCard } from '../components/operation-card.tsx';
import { OperationProgress } from '../components/progress.tsx';
import { SnapshotRow } from '../components/snapshot-row.tsx';
import { WatchedOperation } from '../components/watched-operation.tsx';
import { bytes, idempotencyKey, when } from '../format.ts';
import {
  ConsoleCreateSnapshotDocument,
  ConsoleEnvironmentChartDocument,
  ConsoleEnvironmentDocument,
  ConsoleEstimateDocument,
  ConsoleRestoreLogsDocument,
  type SnapshotFilter,
  type SnapshotInclude,
  type SnapshotKind,
  type SnapshotStatus,
} from '../generated/graphql.ts';
import { useConsole } from '../state.ts';
import { trackOperation, useTrackedOperations } from '../tracked.ts';

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
          trackOperation(out.operation.id, environmentId);
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

/** This environment's operations seen in this tab (its own, and scheduled ones seen starting). */
function RecentOperations({ environmentId }: { environmentId: string }) {
  const mine = useTrackedOperations().filter((t) => t.environmentId === environmentId).slice(0, 5);
  if (mine.length === 0) return null;
  return (
    <section id="environment-operations">
      <h2>Recent operations</h2>
      {mine.map((t) => (
        <OperationCard key={t.id} id={t.id} />
      ))}
    </section>
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
  // graphcache knows the schema, so a list it dropped makes `environment` (the nearest nullable
  // field) null in a stale, partial answer until the API's arrives: that is not "not found".
  const settled = !res.stale && !res.fetching;
  const shown = useRef(res.data);
  if (res.data?.environment || (res.data && settled)) shown.current = res.data;
  const env = shown.current?.environment;
  if (res.data && settled && !env) return <ErrorBox problem={{ code: 'ENVIRONMENT_NOT_FOUND', message: 'This environment does not exist or this key may not see it' }} />;
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
          <RecentOperations environmentId={env.id} />
          <RestoreLogs environmentId={env.id} />
        </>
      ) : res.fetching ? (
        <p class="muted">Loading…</p>
      ) : null}
    </section>
  );
}
