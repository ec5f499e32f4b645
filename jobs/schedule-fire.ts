import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { fireSchedule, SCHEDULE_KINDS } from '../src/services/schedules.ts';

const payload = z.object({ scheduleId: z.string().min(1), kind: z.enum(SCHEDULE_KINDS) });

/** One planned run of a schedule: takes its snapshot and queues the next run. */
export const scheduleFire = (deps: Deps): Task => async (raw) => {
  const { scheduleId, kind } = payload.parse(raw);
  await fireSchedule(deps, scheduleId, kind);
};
