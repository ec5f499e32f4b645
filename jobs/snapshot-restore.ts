import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runRestore } from '../src/services/restores.ts';
import { operationPayload } from './payload.ts';

/** Restores a snapshot into an environment, atomically. */
export const snapshotRestore = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runRestore(deps, operationId, helpers.abortSignal);
};
