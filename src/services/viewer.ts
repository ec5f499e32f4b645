import type { Scope } from '../domain/scopes.ts';

/**
 * Who is calling: an API key of one organization, its scopes (expanded: admin ⊇ write ⊇ read)
 * and, when the key is limited, the projects it may see. Every service read filters through
 * the helpers below, so a forgotten check shows up as "not found", never as a leak.
 */
export interface Viewer {
  organizationId: string;
  apiKeyId: string;
  scopes: ReadonlySet<Scope>;
  /** null: every project of the organization. */
  projectIds: readonly string[] | null;
}

export function canSeeProject(viewer: Viewer, projectId: string): boolean {
  return viewer.projectIds === null || viewer.projectIds.includes(projectId);
}

/**
 * Prisma `where` for projects visible to the viewer, narrowed by `where`. The two are joined with
 * AND, never spread together, so a caller's `id` cannot replace the viewer's project filter.
 */
export function projectWhere<W extends object>(viewer: Viewer, where?: W) {
  const visible = { organizationId: viewer.organizationId, ...(viewer.projectIds ? { id: { in: [...viewer.projectIds] } } : {}) };
  return { AND: [visible, where ?? {}] };
}

/** Prisma `where` for rows of a project (environments, snapshots…) visible to the viewer, narrowed by `where`. */
export function inProjectWhere<W extends object>(viewer: Viewer, where?: W) {
  const visible = { organizationId: viewer.organizationId, ...(viewer.projectIds ? { projectId: { in: [...viewer.projectIds] } } : {}) };
  return { AND: [visible, where ?? {}] };
}

/**
 * Prisma `where` for restore logs visible to the viewer. A log belongs to its target
 * environment's project (a restore may cross projects), so lists reached through the source
 * side show only what node() would.
 */
export function restoreLogWhere<W extends object>(viewer: Viewer, where?: W) {
  const visible = { organizationId: viewer.organizationId, ...(viewer.projectIds ? { targetEnvironment: { projectId: { in: [...viewer.projectIds] } } } : {}) };
  return { AND: [visible, where ?? {}] };
}

/**
 * Prisma `where` for destinations the viewer may see: an unlimited admin key, every destination of
 * the organization; any other key, only where its visible data goes or lies — used by one of its
 * environments or schedules, or holding a copy of one of its snapshots — so a destination is never
 * shown to a key that could not reach it through its own objects.
 */
export function destinationWhere<W extends object>(viewer: Viewer, where?: W) {
  const visible =
    viewer.scopes.has('admin') && viewer.projectIds === null
      ? { organizationId: viewer.organizationId }
      : {
          organizationId: viewer.organizationId,
          OR: [
            { environments: { some: { environment: inProjectWhere(viewer) } } },
            { schedules: { some: { schedule: { environment: inProjectWhere(viewer) } } } },
            { copies: { some: { snapshot: inProjectWhere(viewer) } } },
          ],
        };
  return { AND: [visible, where ?? {}] };
}

/** Prisma `where` for recovery instances visible to the viewer: those of the environments it sees (ACCESS.RecoveryInstance adds the write scope). */
export function recoveryInstanceWhere(viewer: Viewer) {
  return { environment: inProjectWhere(viewer) };
}
