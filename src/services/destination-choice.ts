import { ErrorCode, NotFoundError } from '../domain/errors.ts';
import type { Deps } from './deps.ts';
import { destinationWhere, type Viewer } from './viewer.ts';

/**
 * Destinations named by a mutation argument (a schedule's, an environment's defaults…) are read
 * through the caller's own filter, like any other read: one the key may not see is "not found",
 * whether it exists in another project or not at all, and its name is never echoed.
 */
export async function requireVisibleDestinations(deps: Deps, viewer: Viewer, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const found = await deps.db.destination.findMany({ where: destinationWhere(viewer, { id: { in: [...ids] } }), select: { id: true } });
  const missing = ids.findIndex((id) => !found.some((f) => f.id === id));
  if (missing >= 0) throw new NotFoundError(ErrorCode.DESTINATION_NOT_FOUND, `Destination ${missing + 1} of the list was not found`);
}
