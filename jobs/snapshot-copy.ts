import type { Task } from 'graphile-worker';
import { runCopySnapshot } from '../src/services/copies.ts';
import type { Deps } from '../src/services/deps.ts';
import { operationPayload } from './payload.ts';

/** Adds a copy of a snapshot to one more destination, sending only the blobs it lacks. */
export const snapshotCopy = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runCopySnapshot(deps, operationId, helpers.abortSignal);
};
