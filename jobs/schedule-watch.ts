import type { Task } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import { checkStaleness, schedulePeriodic } from '../src/services/schedules.ts';

/** Hourly: staleness alerts for environments without a recent successful snapshot; then queues itself again. */
export const scheduleWatch = (deps: Deps): Task => async () => {
  await checkStaleness(deps);
  await schedulePeriodic(deps, 'schedule_watch', 'schedule:watch', new Date(Date.now() + 3_600_000));
};
