import { useQuery } from '@urql/preact';
import { useEffect } from 'preact/hooks';
import { ErrorBox, fromCombined } from '../components/errors.tsx';
import { age, bytes, when } from '../format.ts';
import { ConsoleOverviewDocument } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';

function nextRun(s: { paused: boolean; nextDbRunAt?: string | null; nextFullRunAt?: string | null } | null | undefined): string {
  if (!s) return 'no schedule';
  if (s.paused) return 'paused';
  const next = [s.nextDbRunAt, s.nextFullRunAt].filter((x): x is string => !!x).sort()[0];
  return next ? when(next) : '—';
}

interface RecoveryWindow {
  enabled: boolean;
  status: string;
  earliestRecoveryTime?: string | null;
  latestRecoveryTime?: string | null;
  lagSeconds?: number | null;
}

/** Point-in-time recovery: its status, and the window a restore may pick a time in. */
function Recovery({ pitr }: { pitr: RecoveryWindow }) {
  if (!pitr.enabled) return <span class="muted">off</span>;
  return (
    <span data-pitr-status={pitr.status}>
      <span class={`status ${pitr.status === 'ARCHIVING' ? 'ready' : 'running'}`}>{pitr.status}</span>{' '}
      {pitr.earliestRecoveryTime && pitr.latestRecoveryTime ? (
        <span class="pitr-window">
          {when(pitr.earliestRecoveryTime)} → {when(pitr.latestRecoveryTime)}
        </span>
      ) : (
        <span class="muted">no window yet</span>
      )}
      {pitr.lagSeconds != null ? <span class="muted"> · lag {pitr.lagSeconds}s</span> : null}
    </span>
  );
}

/** Projects and their environments at a glance: last snapshot, next scheduled run, recovery window, open alerts. */
export function OverviewPage() {
  const { reconnects } = useConsole();
  const [res, refetch] = useQuery({ query: ConsoleOverviewDocument });
  useEffect(() => {
    if (reconnects) refetch({ requestPolicy: 'network-only' });
  }, [reconnects]);
  const data = res.data;
  return (
    <section>
      <h1>Overview</h1>
      <ErrorBox problem={fromCombined(res.error)} />
      {data ? (
        <p>
          <a href="#/alerts">{data.alertCounts.undismissed} open alerts</a> ({data.alertCounts.unread} unread)
        </p>
      ) : null}
      {data?.projects.edges.map(({ node: p }) => (
        <div class="card" key={p.id}>
          <h2>{p.name}</h2>
          <table class="list">
            <thead>
              <tr>
                <th>Environment</th>
                <th>Last snapshot</th>
                <th>Status</th>
                <th>Size</th>
                <th>Snapshots</th>
                <th>Next scheduled run</th>
                <th>Point-in-time recovery</th>
              </tr>
            </thead>
            <tbody>
              {p.environments.edges.map(({ node: e }) => {
                const last = e.snapshots.edges[0]?.node;
                return (
                  <tr key={e.id}>
                    <td data-label="Environment">
                      <a href={`#/env/${encodeURIComponent(e.id)}`}>{e.name}</a> <span class="muted">{e.type.toLowerCase()}</span>
                    </td>
                    <td data-label="Last snapshot">{age(last?.createdAt)}</td>
                    <td data-label="Status">{last ? <span class={`status ${last.status.toLowerCase()}`}>{last.status}</span> : '—'}</td>
                    <td data-label="Size">{bytes(last?.sizeBytes)}</td>
                    <td data-label="Snapshots">{e.snapshots.totalCount}</td>
                    <td data-label="Next run">
                      <a href={`#/schedule/${encodeURIComponent(e.id)}`}>{nextRun(e.schedule)}</a>
                    </td>
                    <td data-label="Point-in-time recovery" class="pitr">
                      <Recovery pitr={e.pointInTimeRecovery} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ))}
      {res.fetching && !data ? <p class="muted">Loading…</p> : null}
    </section>
  );
}
