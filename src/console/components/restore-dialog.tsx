/**
 * Restore a snapshot: the target environment (its own by default), a safety snapshot of the target
 * first (on by default), the strategy, and confirmation by typing the target's name; then the
 * restore's live progress and its log entry.
 */
import { useMutation, useQuery } from '@urql/preact';
import { useState } from 'preact/hooks';
import { idempotencyKey, when } from '../format.ts';
import { ConsoleEnvironmentsDocument, ConsoleRestoreSnapshotDocument, type ConsoleRestoreLogFieldsFragment, type ConsoleSnapshotFieldsFragment, type RestoreStrategy } from '../generated/graphql.ts';
import { WatchedOperation } from './watched-operation.tsx';
import { trackOperation } from '../tracked.ts';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from './errors.tsx';

export function RestoreDialog(props: { snapshot: ConsoleSnapshotFieldsFragment; defaultTarget: { id: string; name: string }; onClose(): void }) {
  const [envs] = useQuery({ query: ConsoleEnvironmentsDocument });
  const [targetId, setTargetId] = useState(props.defaultTarget.id);
  const [safety, setSafety] = useState(true);
  const [strategy, setStrategy] = useState<RestoreStrategy>('SWAP');
  const [typed, setTyped] = useState('');
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const [started, setStarted] = useState<{ operationId: string; log: ConsoleRestoreLogFieldsFragment } | null>(null);
  const [res, restore] = useMutation(ConsoleRestoreSnapshotDocument);
  const targets = envs.data?.environments.edges.map((e) => e.node) ?? [props.defaultTarget];
  const target = targets.find((t) => t.id === targetId) ?? props.defaultTarget;
  const confirmed = typed === target.name;
  return (
    <tr class="detail">
      <td colSpan={9}>
        <div class="dialog" role="dialog" aria-label="Restore snapshot" id="restore-dialog">
          <h2>Restore {props.snapshot.label ?? `the snapshot of ${when(props.snapshot.createdAt)}`}</h2>
          {started ? (
            <>
              <WatchedOperation id={started.operationId} />
              <p>
                The restore is logged below under <a href={`#/env/${encodeURIComponent(target.id)}`}>{target.name}</a>'s restore log.
              </p>
            </>
          ) : (
            <form
              onSubmit={async (e) => {
                e.preventDefault();
                if (!confirmed) return;
                setProblem(null);
                const r = await restore({ input: { snapshotId: props.snapshot.id, targetEnvironmentId: target.id, createSafetySnapshot: safety, strategy, idempotencyKey: idempotencyKey() } });
                const out = r.data?.restoreSnapshot;
                const p = fromCombined(r.error) ?? typedError(out);
                if (p) return setProblem(p);
                if (out?.__typename === 'RestorePayload') {
                  trackOperation(out.operation.id, target.id);
                  setStarted({ operationId: out.operation.id, log: out.restoreLog });
                }
              }}
            >
              <label>
                Target environment
                <select name="target" value={targetId} onChange={(e) => setTargetId(e.currentTarget.value)}>
                  {targets.map((t) => (
                    <option value={t.id}>{t.name}</option>
                  ))}
                </select>
              </label>
              <label class="check">
                <input type="checkbox" name="safety" checked={safety} onChange={(e) => setSafety(e.currentTarget.checked)} /> Take a safety snapshot of the target first
              </label>
              <label>
                Strategy
                <select name="strategy" value={strategy} onChange={(e) => setStrategy(e.currentTarget.value as RestoreStrategy)}>
                  <option value="SWAP">Swap: restore beside the live database, then swap names</option>
                  <option value="IN_PLACE">In place: pg_restore --clean in one transaction</option>
                </select>
              </label>
              <label>
                Type <strong>{target.name}</strong> to confirm: it will be replaced
                <input name="confirm" autoComplete="off" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
              </label>
              <ErrorBox problem={problem} />
              <button type="submit" class="write danger" disabled={!confirmed || res.fetching} data-action="confirm-restore">
                Restore into {target.name}
              </button>
              <button type="button" onClick={props.onClose}>
                Cancel
              </button>
            </form>
          )}
          {started ? (
            <button type="button" onClick={props.onClose}>
              Close
            </button>
          ) : null}
        </div>
      </td>
    </tr>
  );
}
