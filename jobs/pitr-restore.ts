import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runPitrRestore } from '../src/services/pitr-restores.ts';
import { operationPayload } from './payload.ts';

/** Restores an environment's database (and files) to a point in time, atomically. */
export const pitrRestore = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runPitrRestore(deps, operationId, helpers.abortSignal);
};
