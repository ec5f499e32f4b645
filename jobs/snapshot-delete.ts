import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runDeleteSnapshot } from '../src/services/snapshot-lifecycle.ts';
import { operationPayload } from './payload.ts';

/** Forgets a snapshot on every destination and prunes what nothing else uses. */
export const snapshotDelete = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runDeleteSnapshot(deps, operationId, helpers.abortSignal);
};
