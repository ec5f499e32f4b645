import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runOpenRecoveryInstance } from '../src/services/recovery-instances.ts';
import { operationPayload } from './payload.ts';

/** Recovers an environment's cluster to a point in time into a recovery instance, kept after the job by this worker's keeper. */
export const pitrInstanceOpen = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runOpenRecoveryInstance(deps, operationId, helpers.abortSignal);
};
