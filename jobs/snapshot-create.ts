import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runSnapshot } from '../src/services/snapshots.ts';
import { operationPayload } from './payload.ts';

/** Captures a snapshot into every destination of its environment. */
export const snapshotCreate = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runSnapshot(deps, operationId, helpers.abortSignal);
};
