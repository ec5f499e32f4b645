import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { FIRE_KINDS, fireSchedule } from '../src/services/schedules.ts';

const payload = z.object({ scheduleId: z.string().min(1), kind: z.enum(FIRE_KINDS) });

/** One planned run of a schedule: takes its snapshot (or starts its restore drill) and queues the next run. */
export const scheduleFire = (deps: Deps): Task => async (raw) => {
  const { scheduleId, kind } = payload.parse(raw);
  await fireSchedule(deps, scheduleId, kind);
};
