/**
 * Live operations: each operation this tab started or saw start, with its progress from the
 * `operation` subscription (the environments' `environmentActivity` adds new ones); finished ones
 * stay with their result until dismissed.
 */
import { useMutation, useSubscription } from '@urql/preact';
import { useState } from 'preact/hooks';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from '../components/errors.tsx';
import { OperationProgress } from '../components/progress.tsx';
import { when } from '../format.ts';
import { ConsoleCancelOperationDocument, ConsoleWatchOperationDocument } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';
import { forgetOperation, useTrackedOperations } from '../tracked.ts';

function OperationCard({ id }: { id: string }) {
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

export function OperationsPage() {
  const ids = useTrackedOperations();
  return (
    <section>
      <h1>Live operations</h1>
      {ids.length === 0 ? <p class="muted">No operation started or seen since you signed in.</p> : null}
      {ids.map((id) => (
        <OperationCard key={id} id={id} />
      ))}
    </section>
  );
}
