import { alertWhere } from '../services/alerts.ts';
import { apiKeyWhere } from '../services/api-keys.ts';
import { auditEventWhere } from '../services/audit.ts';
import { operationWhere } from '../services/operations.ts';
import { destinationWhere, inProjectWhere, projectWhere, recoveryInstanceWhere, restoreLogWhere, type Viewer } from '../services/viewer.ts';
import type { Context } from './builder.ts';

/**
 * Who may see what: ONE rule per Prisma model the API exposes, and nothing else decides it.
 *
 * - `scope`: the least scope a key needs to see any object of the type at all.
 * - `where`: the Prisma filter of the objects the viewer may see (organization, projects…).
 * - `key`: the model's primary key field, by which `node(id)` and the type check find a row.
 * - `fast` (optional): the same decision taken from the row alone, sparing a query when the
 *   row carries what it needs; `undefined` means "ask the database".
 *
 * The rule is applied
 * 1. by the object type itself (`authScopes: typeAccess('Model')` on its prismaObject/prismaNode):
 *    every object of the type, however it was reached (root field, node, relation, payload), is
 *    checked against `scope` and `where` before any of its fields resolves;
 * 2. by `node`/`nodes` (`loadVisibleNode`), which load only through `where`;
 * 3. by root fields and list relations, which filter with `visibleWhere(ctx, 'Model', …)`, so lists
 *    and counts hold only visible rows and the type check in 1 never has to refuse one.
 * `src/schema/index.ts` refuses to build a schema with a Prisma-backed type that has no rule here or
 * does not declare `typeAccess`, so a type added later cannot forget it; the authorization matrix
 * test (test/api/authorization-matrix.test.ts) then calls it with every kind of key.
 */
export interface AccessRule {
  scope: 'authenticated' | 'read' | 'write' | 'admin';
  key: string;
  where: (viewer: Viewer) => object;
  fast?: (viewer: Viewer, row: Record<string, unknown>) => boolean | undefined;
}

const inOrganization = (v: Viewer, row: Record<string, unknown>) => row.organizationId === v.organizationId;
/** For rows with organizationId and projectId (or, for Project, id): the whole decision. */
const inVisibleProject = (projectField: string) => (v: Viewer, row: Record<string, unknown>) => {
  const projectId = row[projectField];
  if (typeof row.organizationId !== 'string' || typeof projectId !== 'string') return undefined;
  return inOrganization(v, row) && (v.projectIds === null || v.projectIds.includes(projectId));
};

/**
 * For rows of an organization that may belong to an environment (operations, alerts): the rule
 * decided from the row, its organization and, for a key limited to projects, the project of its
 * environment when the row was read with `environment: { projectId }`. A row without an
 * environment is visible to a limited key when `withoutEnvironment` says so.
 */
const inEnvironmentProject = (withoutEnvironment: boolean) => (v: Viewer, row: Record<string, unknown>) => {
  if (typeof row.organizationId !== 'string') return undefined;
  if (!inOrganization(v, row)) return false;
  if (v.projectIds === null) return true;
  if (row.environmentId === null) return withoutEnvironment;
  const projectId = (row.environment as { projectId?: unknown } | null | undefined)?.projectId;
  return typeof projectId === 'string' ? v.projectIds.includes(projectId) : undefined;
};

export const ACCESS = {
  Organization: { scope: 'authenticated', key: 'id', where: (v) => ({ id: v.organizationId }), fast: (v, row) => row.id === v.organizationId },
  Project: { scope: 'read', key: 'id', where: (v) => projectWhere(v), fast: inVisibleProject('id') },
  Environment: { scope: 'read', key: 'id', where: (v) => inProjectWhere(v), fast: inVisibleProject('projectId') },
  EnvironmentSettings: { scope: 'read', key: 'environmentId', where: (v) => ({ environment: inProjectWhere(v) }) },
  Snapshot: { scope: 'read', key: 'id', where: (v) => inProjectWhere(v), fast: inVisibleProject('projectId') },
  SnapshotCopy: { scope: 'read', key: 'id', where: (v) => ({ snapshot: inProjectWhere(v) }) },
  Operation: { scope: 'read', key: 'id', where: (v) => operationWhere(v), fast: inEnvironmentProject(false) },
  RestoreLog: { scope: 'read', key: 'id', where: (v) => restoreLogWhere(v) },
  RestoreDrill: { scope: 'read', key: 'id', where: (v) => ({ organizationId: v.organizationId, environment: inProjectWhere(v) }) },
  // Where a recovered copy of the cluster listens: for the keys that may restore the environment.
  RecoveryInstance: { scope: 'write', key: 'id', where: (v) => recoveryInstanceWhere(v) },
  Schedule: { scope: 'read', key: 'id', where: (v) => ({ environment: inProjectWhere(v) }) },
  // A cluster's base backups serve every environment on it: visible with any one of them.
  BaseBackup: { scope: 'read', key: 'id', where: (v) => ({ cluster: { environments: { some: inProjectWhere(v) } } }) },
  Alert: { scope: 'read', key: 'id', where: (v) => alertWhere(v), fast: inEnvironmentProject(true) },
  // Non-admin keys see a destination only as where their environments' snapshots go.
  Destination: { scope: 'read', key: 'id', where: (v) => destinationWhere(v) },
  Webhook: { scope: 'admin', key: 'id', where: (v) => ({ organizationId: v.organizationId }), fast: (v, row) => (typeof row.organizationId === 'string' ? inOrganization(v, row) : undefined) },
  WebhookDelivery: { scope: 'admin', key: 'id', where: (v) => ({ webhook: { organizationId: v.organizationId }, alert: alertWhere(v) }) },
  // Every key sees itself (`viewer { apiKey }`); admins see the keys they could have issued.
  // The audit trail is the organization's, for its admins.
  AuditEvent: { scope: 'admin', key: 'id', where: (v) => auditEventWhere(v), fast: (v, row) => (typeof row.organizationId === 'string' ? inOrganization(v, row) : undefined) },
  ApiKey: { scope: 'authenticated', key: 'id', where: (v) => (v.scopes.has('admin') ? apiKeyWhere(v) : { id: v.apiKeyId, organizationId: v.organizationId }) },
} satisfies Record<string, AccessRule>;

export type AccessModel = keyof typeof ACCESS;

const SCOPE_NAMES = { read: 'backups:read', write: 'backups:write', admin: 'admin' } as const;

export function hasScope(viewer: Viewer | null, scope: AccessRule['scope']): boolean {
  if (!viewer) return false;
  return scope === 'authenticated' || viewer.scopes.has(SCOPE_NAMES[scope]);
}

/**
 * `where` joined with AND to the viewer's rule for the model: for root fields and list relations.
 * A key without the rule's scope matches nothing, so a relation to a type it may not see is empty.
 */
export function visibleWhere<W extends object>(ctx: Context, model: AccessModel, where?: W) {
  const rule = ACCESS[model] as AccessRule;
  if (!ctx.viewer || !hasScope(ctx.viewer, rule.scope)) return { [rule.key]: { in: [] } } as never;
  return { AND: [rule.where(ctx.viewer), where ?? {}] } as never;
}

/** The Prisma delegate of a model (`Environment` → `db.environment`). */
function delegate(ctx: Context, model: string) {
  return (ctx.deps.db as unknown as Record<string, { findFirst(a: object): Promise<object | null>; findMany(a: object): Promise<Record<string, unknown>[]> }>)[
    model[0].toLowerCase() + model.slice(1)
  ];
}

/** For node(id): the row when the viewer's rule lets it see it, else null — the same answer as for an id that never existed. */
export async function loadVisibleNode(ctx: Context, model: string, id: string): Promise<object | null> {
  const rule = (ACCESS as Record<string, AccessRule>)[model];
  if (!rule || !ctx.viewer || !hasScope(ctx.viewer, rule.scope)) return null;
  return delegate(ctx, model).findFirst({ where: { AND: [rule.where(ctx.viewer), { [rule.key]: id }] } });
}

/**
 * Checks of one request, batched per model: objects resolved in the same turn of the event loop
 * (a list's items, siblings) cost one query per model, not one per object.
 */
class VisibilityBatch {
  private known = new Map<string, Promise<boolean>>();
  private pending = new Map<AccessModel, { ids: Set<string>; loaded: Promise<Set<string>> }>();
  constructor(private ctx: Context & { viewer: Viewer }) {}

  check(model: AccessModel, id: string): Promise<boolean> {
    const k = `${model}:${id}`;
    let answer = this.known.get(k);
    if (!answer) {
      let batch = this.pending.get(model);
      if (!batch) {
        const ids = new Set<string>();
        const loaded = new Promise<void>((r) => setImmediate(r)).then(() => {
          this.pending.delete(model);
          return this.load(model, [...ids]);
        });
        batch = { ids, loaded };
        this.pending.set(model, batch);
      }
      batch.ids.add(id);
      answer = batch.loaded.then((found) => found.has(id));
      this.known.set(k, answer);
    }
    return answer;
  }

  private async load(model: AccessModel, ids: string[]): Promise<Set<string>> {
    const rule = ACCESS[model] as AccessRule;
    const rows = await delegate(this.ctx, model).findMany({ where: { AND: [rule.where(this.ctx.viewer), { [rule.key]: { in: ids } }] }, select: { [rule.key]: true } });
    return new Set(rows.map((r) => String(r[rule.key])));
  }
}

const batches = new WeakMap<Context, VisibilityBatch>();

/**
 * Whether the viewer's rule for the model lets it see this row (the `visible` scope loader).
 * Answered at once when the row decides (`fast`): scope-auth then checks the object without a
 * promise, which for a list of 1,000 environments with their latest snapshots is most of the
 * check's cost.
 */
export function isVisible(ctx: Context, model: AccessModel, row: Record<string, unknown>): boolean | Promise<boolean> {
  const viewer = ctx.viewer;
  if (!viewer) return false;
  const rule = ACCESS[model] as AccessRule;
  const quick = rule.fast?.(viewer, row);
  if (quick !== undefined) return quick;
  const id = row[rule.key];
  if (typeof id !== 'string') return false;
  let batch = batches.get(ctx);
  if (!batch) batches.set(ctx, (batch = new VisibilityBatch(ctx as Context & { viewer: Viewer })));
  return batch.check(model, id);
}

/**
 * The type-level `authScopes` of an exposed model: the rule's scope AND the row's visibility.
 * Declared on every prismaObject/prismaNode; `src/schema/index.ts` checks that none lacks it.
 */
export function typeAccess(model: AccessModel) {
  const rule = ACCESS[model] as AccessRule;
  const fn = (row: Record<string, unknown>) => ({ $all: { [rule.scope]: true, visible: { model, row } } });
  return Object.assign(fn, { accessModel: model }) as never;
}
