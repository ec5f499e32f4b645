import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runDrill } from '../src/services/drills.ts';
import { operationPayload } from './payload.ts';

/** Restores the newest READY snapshot into scratch copies, checks and times it, drops them. */
export const restoreDrill = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runDrill(deps, operationId, helpers.abortSignal);
};
