import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { afterScheduledSnapshotFailed } from '../src/services/schedules.ts';

const payload = z.object({ snapshotId: z.string().min(1) });

/** A schedule's reaction to its failed snapshot: a retry, a pause or nothing, by the failure policy. */
export const scheduleReact = (deps: Deps): Task => async (raw) => {
  const { snapshotId } = payload.parse(raw);
  await afterScheduledSnapshotFailed(deps, snapshotId);
};
