import { useMutation, useQuery } from '@urql/preact';
import { useEffect, useState } from 'preact/hooks';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from '../components/errors.tsx';
import { when } from '../format.ts';
import { ConsoleAlertsDocument, ConsoleDismissAlertDocument, ConsoleMarkAlertReadDocument } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';

/** Open alerts, newest first; new ones arrive through `alertCreated` (see the cache's updates). */
export function AlertsPage() {
  const { abilities, reconnects } = useConsole();
  const [res, refetch] = useQuery({ query: ConsoleAlertsDocument, variables: {} });
  const [, markRead] = useMutation(ConsoleMarkAlertReadDocument);
  const [, dismiss] = useMutation(ConsoleDismissAlertDocument);
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  useEffect(() => {
    if (reconnects) refetch({ requestPolicy: 'network-only' });
  }, [reconnects]);
  const alerts = res.data?.alerts;
  return (
    <section>
      <h1>Alerts</h1>
      <ErrorBox problem={fromCombined(res.error) ?? problem} />
      {res.data ? (
        <p>
          {res.data.alertCounts.undismissed} open, {res.data.alertCounts.unread} unread
        </p>
      ) : null}
      <ul class="alerts" id="alerts">
        {alerts?.edges
          .filter(({ node }) => !node.dismissed)
          .map(({ node: a }) => (
            <li class={`alert severity-${a.severity.toLowerCase()} ${a.read ? 'read' : 'unread'}`} data-alert={a.id} data-type={a.type}>
              <strong>{a.type.replace(/_/g, ' ')}</strong> <span class="muted">{when(a.createdAt)}</span>
              {a.environment ? <a href={`#/env/${encodeURIComponent(a.environment.id)}`}> {a.environment.name}</a> : null}
              <div>{a.message}</div>
              {abilities.write ? (
                <span class="actions">
                  {!a.read ? (
                    <button type="button" class="write" onClick={async () => {
                      const r = await markRead({ input: { id: a.id } });
                      setProblem(fromCombined(r.error) ?? typedError(r.data?.markAlertRead));
                    }}>
                      Mark read
                    </button>
                  ) : null}
                  <button type="button" class="write" onClick={async () => {
                    const r = await dismiss({ input: { id: a.id } });
                    setProblem(fromCombined(r.error) ?? typedError(r.data?.dismissAlert));
                  }}>
                    Dismiss
                  </button>
                </span>
              ) : null}
            </li>
          ))}
      </ul>
      {alerts && alerts.totalCount === 0 ? <p class="muted">No open alert.</p> : null}
    </section>
  );
}
