/**
 * One operation followed over the `operation` subscription: what it is, its progress, a Cancel
 * button while it runs (for a key that may write), its result or error once it ended.
 */
import { useMutation, useSubscription } from '@urql/preact';
import { useState } from 'preact/hooks';
import { when } from '../format.ts';
import { ConsoleCancelOperationDocument, ConsoleWatchOperationDocument } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';
import { forgetOperation } from '../tracked.ts';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from './errors.tsx';
import { OperationProgress } from './progress.tsx';

export function OperationCard({ id }: { id: string }) {
  const { abilities } = useConsole();
  const [res] = useSubscription({ query: ConsoleWatchOperationDocument, variables: { id } });
  const [cancelling, cancel] = useMutation(ConsoleCancelOperationDocument);
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const op = res.data?.operation;
  const active = op && (op.status === 'QUEUED' || op.status === 'RUNNING');
  return (
    <div class="card operation" data-operation-card={id}>
      <ErrorBox problem={fromCombined(res.error)} />
      {op ? (
        <>
          <h2>
            {op.type.replace(/_/g, ' ').toLowerCase()} · {op.environment?.name ?? '—'}
            {op.snapshot?.label ? <span class="muted"> · {op.snapshot.label}</span> : null}
          </h2>
          <p class="muted">
            started {when(op.startedAt ?? op.createdAt)}
            {op.finishedAt ? `, finished ${when(op.finishedAt)}` : ''} · <span class={`status ${op.status.toLowerCase()}`}>{op.status}</span>
            {op.message ? ` · ${op.message}` : ''}
          </p>
          <OperationProgress op={op} />
          {op.error ? <p class="error">{op.error}</p> : null}
          {active && abilities.write ? (
            <button
              type="button"
              class="write"
              data-action="cancel"
              disabled={cancelling.fetching || op.cancelRequested}
              onClick={async () => {
                const r = await cancel({ input: { id } });
                setProblem(fromCombined(r.error) ?? typedError(r.data?.cancelOperation));
              }}
            >
              {op.cancelRequested ? 'Cancelling…' : 'Cancel'}
            </button>
          ) : null}
          {!active ? (
            <button type="button" class="link" onClick={() => forgetOperation(id)}>
              Dismiss
            </button>
          ) : null}
          <ErrorBox problem={problem} />
        </>
      ) : res.fetching ? (
        <p class="muted">Connecting…</p>
      ) : null}
    </div>
  );
}
