/**
 * The newest snapshots of many environments at once: a list of environments that each show
 * `snapshots(first: n)` (the console's overview shows each one's latest) costs one statement for
 * all of them instead of one per environment. Only filters that are plain column conditions are
 * served here; the caller reads other pages one environment at a time.
 */
import type { Snapshot } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';
import type { Viewer } from './viewer.ts';

/** A snapshot filter this module can apply in SQL. */
export interface SimpleSnapshotFilter {
  statuses?: readonly string[] | null;
  kinds?: readonly string[] | null;
  pinned?: boolean | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
}

/** Whether `filter` has only conditions newestSnapshotIds applies (a label, contents or environment type filter has not). */
export function isSimpleSnapshotFilter(filter: object | null | undefined): boolean {
  if (!filter) return true;
  return Object.entries(filter).every(([k, v]) => v == null || ['statuses', 'kinds', 'pinned', 'createdAfter', 'createdBefore'].includes(k));
}

/**
 * Ids of the newest `take` snapshots (by id, which sorts by creation) of each environment,
 * matching `filter` and visible to the viewer; DELETED ones only when `statuses` asks for them,
 * as snapshotFilterWhere does. Each environment's rows come from its own index range (LATERAL).
 */
export async function newestSnapshotIds(deps: Deps, viewer: Viewer, environmentIds: readonly string[], filter: SimpleSnapshotFilter | null | undefined, take: number): Promise<Map<string, string[]>> {
  const rows = await newest<{ environmentId: string; id: string }>(deps, viewer, environmentIds, filter, take, 's.id, s."environmentId"');
  const byEnvironment = new Map<string, string[]>(environmentIds.map((id) => [id, []]));
  for (const r of rows) byEnvironment.get(r.environmentId)?.push(r.id);
  return byEnvironment;
}

/**
 * The same snapshots as newestSnapshotIds, whole rows as `db.snapshot.findMany` returns them
 * (every scalar column), newest first per environment: for a caller that needs no relation of
 * them, one statement from the index instead of two, the second of which (1,000 ids of 100,000
 * rows for the overview) PostgreSQL planned as a sequential scan of the table.
 */
export async function newestSnapshots(deps: Deps, viewer: Viewer, environmentIds: readonly string[], filter: SimpleSnapshotFilter | null | undefined, take: number): Promise<Map<string, Snapshot[]>> {
  // An enum array comes back from a raw query in PostgreSQL's text form ('{DB,FILES}'); as text[]
  // it is the array the client returns, which also gives [] for the NULL a create without it stores.
  const rows = await newest<Snapshot & { includesList?: Snapshot['includes'] }>(deps, viewer, environmentIds, filter, take, 's.*, s.includes::text[] AS "includesList"');
  const byEnvironment = new Map<string, Snapshot[]>(environmentIds.map((id) => [id, []]));
  for (const { includesList, ...r } of rows) byEnvironment.get(r.environmentId)?.push({ ...r, includes: includesList ?? [] });
  return byEnvironment;
}

/**
 * How many snapshots of each environment match `filter` and are visible to the viewer (DELETED
 * ones only when `statuses` asks for them): one GROUP BY over the (environmentId,
 * organizationId, status) index, the environments bound as one array rather than one parameter each.
 */
export async function snapshotCounts(deps: Deps, viewer: Viewer, environmentIds: readonly string[], filter: SimpleSnapshotFilter | null | undefined): Promise<Map<string, number>> {
  const { sql, params } = snapshotCountsStatement(viewer, environmentIds, filter);
  const rows = await deps.db.$queryRawUnsafe<{ environmentId: string; n: number }[]>(sql, ...params);
  return new Map(rows.map((r) => [r.environmentId, r.n]));
}

/** The statement snapshotCounts runs (exported for the test that checks its plan). */
export function snapshotCountsStatement(viewer: Viewer, environmentIds: readonly string[], filter: SimpleSnapshotFilter | null | undefined): { sql: string; params: unknown[] } {
  const params: unknown[] = [[...environmentIds], viewer.organizationId];
  const sql = `SELECT s."environmentId", count(*)::int AS n FROM snapshots s
     WHERE s."environmentId" = ANY($1::text[]) AND s."organizationId" = $2 AND ${conditions(viewer, filter, params)}
     GROUP BY s."environmentId"`;
  return { sql, params };
}

/**
 * The SQL conditions on `snapshots s` of the viewer's projects and `filter`, their values appended
 * to `params`. Statuses and kinds are compared as the columns' enum types: compared as text
 * (`status::text = ANY(…)`), PostgreSQL has no statistics for the expression and estimated one
 * row where the bench's environment page counts 18,560, then sorted them all for a GroupAggregate
 * (47 ms against 20 ms at load ~35).
 */
function conditions(viewer: Viewer, filter: SimpleSnapshotFilter | null | undefined, params: unknown[]): string {
  const cond: string[] = [];
  const param = (v: unknown) => (params.push(v), `$${params.length}`);
  if (viewer.projectIds) cond.push(`s."projectId" = ANY(${param([...viewer.projectIds])}::text[])`);
  if (filter?.statuses?.length) cond.push(`s.status = ANY(${param([...filter.statuses])}::"SnapshotStatus"[])`);
  else cond.push(`s.status <> 'DELETED'`);
  if (filter?.kinds?.length) cond.push(`s.kind = ANY(${param([...filter.kinds])}::"SnapshotKind"[])`);
  if (filter?.pinned != null) cond.push(`s.pinned = ${param(filter.pinned)}`);
  if (filter?.createdAfter) cond.push(`s."createdAt" >= ${param(filter.createdAfter)}`);
  if (filter?.createdBefore) cond.push(`s."createdAt" < ${param(filter.createdBefore)}`);
  return cond.join(' AND ');
}

async function newest<R>(deps: Deps, viewer: Viewer, environmentIds: readonly string[], filter: SimpleSnapshotFilter | null | undefined, take: number, columns: string): Promise<R[]> {
  const params: unknown[] = [[...environmentIds], viewer.organizationId, take];
  // e.ord keeps each environment's rows in their index order (newest first) in the result.
  return deps.db.$queryRawUnsafe<R[]>(
    `SELECT s.* FROM unnest($1::text[]) WITH ORDINALITY AS e(id, ord)
     CROSS JOIN LATERAL (
       SELECT ${columns} FROM snapshots s
       WHERE s."environmentId" = e.id AND s."organizationId" = $2 AND ${conditions(viewer, filter, params)}
       ORDER BY s.id DESC LIMIT $3
     ) s
     ORDER BY e.ord, s.id DESC`,
    ...params,
  );
}
