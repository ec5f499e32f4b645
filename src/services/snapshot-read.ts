import { ErrorCode, NotFoundError } from '../domain/errors.ts';
import type { Deps } from './deps.ts';
import { inProjectWhere, type Viewer } from './viewer.ts';

/**
 * Reading a snapshot through the viewer's filter, for every service that acts on one (copies,
 * verify, delete, downloads, restores): a module of its own so that none of them needs the
 * snapshot job's module, nor it theirs.
 */

/** Reads a snapshot the viewer may see. */
export async function getSnapshot(deps: Deps, viewer: Viewer, id: string) {
  const s = await deps.db.snapshot.findFirst({ where: inProjectWhere(viewer, { id }) });
  if (!s) throw new NotFoundError(ErrorCode.SNAPSHOT_NOT_FOUND, 'Snapshot not found');
  return s;
}
