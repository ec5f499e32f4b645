import type { Task } from 'graphile-worker';
import { z } from 'zod';
import { runRepositoryHeal } from '../src/services/damage.ts';
import type { Deps } from '../src/services/deps.ts';

const payload = z.object({ destinationId: z.string().min(1), snapshotId: z.string().min(1) });

/** Drops damaged packs a download met from the destination's index and marks what lost data. */
export const repositoryHeal = (deps: Deps): Task => async (raw, helpers) => {
  const input = payload.parse(raw);
  await runRepositoryHeal(deps, input, helpers.abortSignal);
};
