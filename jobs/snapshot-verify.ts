import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { runVerifySnapshot } from '../src/services/verify.ts';
import { operationPayload } from './payload.ts';

/** Checks a snapshot's trees and blobs on every destination that holds it. */
export const snapshotVerify = (deps: Deps): Task => async (payload, helpers) => {
  const { operationId } = operationPayload.parse(payload);
  await runVerifySnapshot(deps, operationId, helpers.abortSignal);
};
