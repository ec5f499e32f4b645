import type { Task } from 'graphile-worker';
import { z } from 'zod';
import type { Deps } from '../src/services/deps.ts';
import { deliverWebhook } from '../src/services/webhooks.ts';

const payload = z.object({ deliveryId: z.string().min(1) });

/** One signed POST of an alert to a webhook; a failure queues the next attempt itself. */
export const webhookDeliver = (deps: Deps): Task => async (raw) => {
  const { deliveryId } = payload.parse(raw);
  await deliverWebhook(deps, deliveryId);
};
