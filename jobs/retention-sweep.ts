import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { sweepRetention } from '../src/services/retention.ts';
import { schedulePeriodic } from '../src/services/schedules.ts';

/** Daily: a retention run for every environment (safety snapshots and age limits expire without any schedule). */
export const retentionSweep = (deps: Deps): Task => async () => {
  await sweepRetention(deps);
  await schedulePeriodic(deps, 'retention_sweep', 'retention:sweep', new Date(Date.now() + 86_400_000));
};
