import { z } from 'zod';

/** Every operation job carries just the operation's id; everything else is read from the catalog. */
export const operationPayload = z.object({ operationId: z.string().min(1) });
