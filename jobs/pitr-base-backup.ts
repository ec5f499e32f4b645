import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runBaseBackup } from '../src/services/pitr-base-backups.ts';
import { operationPayload } from './payload.ts';

/** Streams pg_basebackup of a cluster into every destination of its environments. */
export const pitrBaseBackup = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runBaseBackup(deps, operationId, helpers.abortSignal);
};
