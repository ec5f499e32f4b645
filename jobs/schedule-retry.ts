import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { retryScheduledSnapshot } from '../src/services/schedules.ts';

const payload = z.object({ snapshotId: z.string().min(1) });

/** Another attempt of a failed scheduled snapshot (failure policy RETRY). */
export const scheduleRetry = (deps: Deps): Task => async (raw) => {
  const { snapshotId } = payload.parse(raw);
  await retryScheduledSnapshot(deps, snapshotId);
};
