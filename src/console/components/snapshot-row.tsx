/**
 * One snapshot in an environment's list: what it is, and what this key may do with it — download
 * (a fresh signed link per click), its copies, pin / unpin, restore, delete (the API's refusal
 * shown as it words it).
 */
import { useClient, useMutation, useQuery } from '@urql/preact';
import type { CombinedError } from '@urql/core';
import { useState } from 'preact/hooks';
import { bytes, duration, when } from '../format.ts';
import {
  ConsoleDeleteSnapshotDocument,
  ConsoleDownloadDocument,
  ConsolePinSnapshotDocument,
  ConsoleSnapshotCopiesDocument,
  ConsoleUnpinSnapshotDocument,
  type ConsoleSnapshotFieldsFragment,
} from '../generated/graphql.ts';
import { useConsole } from '../state.ts';
import { trackOperation } from '../tracked.ts';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from './errors.tsx';
import { RestoreDialog } from './restore-dialog.tsx';

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

export function SnapshotRow({ s, environment }: { s: ConsoleSnapshotFieldsFragment; environment: { id: string; name: string } }) {
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
  async function act(run: () => Promise<{ data?: Record<string, unknown> | null; error?: CombinedError }>, field: string) {
    setProblem(null);
    const r = await run();
    const out = r.data?.[field] as { __typename?: string; code?: string; message?: string; operation?: { id: string } } | undefined;
    const p = fromCombined(r.error) ?? typedError(out);
    if (p) setProblem(p);
    if (out?.operation) trackOperation(out.operation.id, environment.id);
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
