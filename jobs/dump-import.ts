import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runImport } from '../src/services/imports.ts';
import { operationPayload } from './payload.ts';

/** Imports a dump into an environment, atomically, with a safety snapshot first. */
export const dumpImport = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runImport(deps, operationId, helpers.abortSignal);
};
