import { useSubscription } from '@urql/preact';
import { ConsoleWatchOperationDocument } from '../generated/graphql.ts';
import { ErrorBox, fromCombined } from './errors.tsx';
import { OperationProgress } from './progress.tsx';

/**
 * Follows one operation over the `operation` subscription, which answers with the operation's
 * current state first: after a reconnect (graphql-ws subscribes again) the bar resumes from there.
 */
export function WatchedOperation({ id }: { id: string }) {
  const [res] = useSubscription({ query: ConsoleWatchOperationDocument, variables: { id } });
  const op = res.data?.operation;
  return (
    <div>
      <ErrorBox problem={fromCombined(res.error)} />
      {op ? <OperationProgress op={op} /> : <p class="muted">Waiting for the operation…</p>}
      {op?.error ? <p class="error">{op.error}</p> : null}
    </div>
  );
}
