/**
 * Live operations: every operation under way (the `operations` query, on load and after a
 * reconnect, whoever started it) and each one this tab started or saw start since, with its
 * progress from the `operation` subscription (the environments' `environmentActivity` adds new
 * ones); finished ones stay with their result until dismissed.
 */
import { useQuery } from '@urql/preact';
import { useEffect } from 'preact/hooks';
import { ErrorBox, fromCombined } from '../components/errors.tsx';
import { OperationCard } from '../components/operation-card.tsx';
import { ConsoleRunningOperationsDocument } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';
import { trackOperation, useTrackedOperations } from '../tracked.ts';

export function OperationsPage() {
  const { reconnects } = useConsole();
  const tracked = useTrackedOperations();
  const [running, refetch] = useQuery({ query: ConsoleRunningOperationsDocument, requestPolicy: 'network-only' });
  useEffect(() => {
    if (reconnects) refetch({ requestPolicy: 'network-only' });
  }, [reconnects]);
  // Tracked, so that one which ends while shown stays with its result like those this tab started.
  useEffect(() => {
    for (const e of [...(running.data?.operations.edges ?? [])].reverse()) trackOperation(e.node.id, e.node.environment?.id);
  }, [running.data]);
  const ids = [...(running.data?.operations.edges.map((e) => e.node.id) ?? []), ...tracked.map((t) => t.id)].filter((id, i, all) => all.indexOf(id) === i);
  return (
    <section>
      <h1>Live operations</h1>
      <ErrorBox problem={fromCombined(running.error)} />
      {ids.length === 0 && !running.fetching ? <p class="muted">No operation under way, none started or seen since you signed in.</p> : null}
      {ids.map((id) => (
        <OperationCard key={id} id={id} />
      ))}
    </section>
  );
}
