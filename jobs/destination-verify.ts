import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { runDestinationVerify } from '../src/services/verify.ts';

const payload = z.object({ destinationId: z.string().min(1) });

/** A destination's scheduled verification (verifyCron): verifies its newest snapshots, plans the next run. */
export const destinationVerify = (deps: Deps): Task => async (raw) => {
  const { destinationId } = payload.parse(raw);
  await runDestinationVerify(deps, destinationId);
};
