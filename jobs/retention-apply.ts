import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { applyRetention } from '../src/services/retention.ts';

const payload = z.object({ environmentId: z.string().min(1) });

/** Applies an environment's retention policy (after a scheduled snapshot, and from the daily sweep). */
export const retentionApply = (deps: Deps): Task => async (raw) => {
  const { environmentId } = payload.parse(raw);
  await applyRetention(deps, environmentId);
};
