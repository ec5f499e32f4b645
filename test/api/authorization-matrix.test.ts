/**
 * The authorization matrix, generated from the schema itself (introspection): every query field,
 * mutation and subscription, and every type reachable through `node`, is called with no key, a bad
 * key, read / write / admin keys of the organization, and the same keys limited to project A.
 * Arguments are built from the input types; every argument that names an object gets the id of an
 * object the key must not see (of project B for the limited keys, of another organization for
 * the others). Each call is checked against the field's declared expectation below:
 * - a key without the scope gets UNAUTHENTICATED / FORBIDDEN (naming the scope) and nothing changes;
 * - a key with the scope never succeeds on an object it may not see (null, NotFoundError, or a
 *   refusal);
 * - no id or name of an object the key may not see appears anywhere in any response.
 * A field (or node type) without a declared expectation fails the test, so a new one is covered
 * the day it is added.
 */
import {
  buildClientSchema,
  getIntrospectionQuery,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  isUnionType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLOutputType,
  type GraphQLSchema,
  type IntrospectionQuery,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { raiseAlert } from '../../src/services/alerts.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { until } from '../harness/process.ts';

type Scope = 'authenticated' | 'read' | 'write' | 'admin';
/** scope: the least the caller must hold; object: the field reads or acts on an object named by an argument. */
interface Expectation {
  scope: Scope;
  object: boolean;
}

const EXPECT: Record<string, Expectation> = {
  'Query.alertCounts': { scope: 'read', object: false },
  'Query.alerts': { scope: 'read', object: false },
  'Query.apiKeys': { scope: 'admin', object: false },
  'Query.auditEvents': { scope: 'admin', object: false },
  'Query.cronPresets': { scope: 'read', object: false },
  'Query.destination': { scope: 'read', object: true },
  'Query.destinations': { scope: 'admin', object: false },
  'Query.environment': { scope: 'read', object: true },
  'Query.environmentSettings': { scope: 'read', object: true },
  'Query.environments': { scope: 'read', object: true },
  'Query.estimateSnapshotSize': { scope: 'read', object: true },
  'Query.node': { scope: 'read', object: true },
  'Query.nodes': { scope: 'read', object: true },
  'Query.operation': { scope: 'read', object: true },
  'Query.operations': { scope: 'read', object: true },
  'Query.organization': { scope: 'authenticated', object: false },
  'Query.previewRetention': { scope: 'read', object: true },
  'Query.project': { scope: 'read', object: true },
  'Query.projects': { scope: 'read', object: false },
  'Query.schedule': { scope: 'read', object: true },
  'Query.snapshot': { scope: 'read', object: true },
  'Query.viewer': { scope: 'authenticated', object: false },
  'Query.webhooks': { scope: 'admin', object: false },
  'Mutation.cancelOperation': { scope: 'write', object: true },
  'Mutation.closeRecoveryInstance': { scope: 'write', object: true },
  'Mutation.extendRecoveryInstance': { scope: 'write', object: true },
  'Mutation.copySnapshot': { scope: 'write', object: true },
  'Mutation.createBaseBackup': { scope: 'write', object: true },
  'Mutation.createApiKey': { scope: 'admin', object: true },
  'Mutation.createDestination': { scope: 'admin', object: false },
  'Mutation.createEnvironment': { scope: 'admin', object: true },
  'Mutation.createProject': { scope: 'admin', object: false },
  'Mutation.createSnapshot': { scope: 'write', object: true },
  'Mutation.createWebhook': { scope: 'admin', object: false },
  'Mutation.deleteDestination': { scope: 'admin', object: true },
  'Mutation.deleteEnvironment': { scope: 'admin', object: true },
  'Mutation.deleteProject': { scope: 'admin', object: true },
  'Mutation.deleteSchedule': { scope: 'write', object: true },
  'Mutation.deleteSnapshot': { scope: 'write', object: true },
  'Mutation.deleteWebhook': { scope: 'admin', object: true },
  'Mutation.dismissAlert': { scope: 'write', object: true },
  'Mutation.lockEnvironment': { scope: 'write', object: true },
  'Mutation.importDump': { scope: 'write', object: true },
  'Mutation.markAlertRead': { scope: 'write', object: true },
  'Mutation.markAllAlertsRead': { scope: 'write', object: false },
  'Mutation.pauseSchedule': { scope: 'write', object: true },
  'Mutation.pinSnapshot': { scope: 'write', object: true },
  'Mutation.restoreSnapshot': { scope: 'write', object: true },
  'Mutation.restoreToPointInTime': { scope: 'write', object: true },
  'Mutation.openRecoveryInstance': { scope: 'write', object: true },
  'Mutation.resumeSchedule': { scope: 'write', object: true },
  'Mutation.revealRepositoryPassword': { scope: 'admin', object: true },
  'Mutation.revokeApiKey': { scope: 'admin', object: true },
  'Mutation.runRestoreDrill': { scope: 'write', object: true },
  'Mutation.runScheduleNow': { scope: 'write', object: true },
  'Mutation.switchDatabase': { scope: 'write', object: true },
  'Mutation.setEnvironmentDestinations': { scope: 'admin', object: true },
  'Mutation.testDestination': { scope: 'admin', object: true },
  'Mutation.unlockEnvironment': { scope: 'write', object: true },
  'Mutation.unpinSnapshot': { scope: 'write', object: true },
  'Mutation.updateDestination': { scope: 'admin', object: true },
  'Mutation.updateEnvironment': { scope: 'admin', object: true },
  'Mutation.updateEnvironmentSettings': { scope: 'admin', object: true },
  'Mutation.updateProject': { scope: 'admin', object: true },
  'Mutation.upsertSchedule': { scope: 'write', object: true },
  'Mutation.verifySnapshot': { scope: 'write', object: true },
  'Subscription.alertCreated': { scope: 'read', object: false },
  'Subscription.environmentActivity': { scope: 'read', object: true },
  'Subscription.operation': { scope: 'read', object: true },
};

/** The least scope that shows an object of each node type (its rule in src/schema/access.ts). */
const NODE_SCOPE: Record<string, Scope> = {
  Alert: 'read',
  ApiKey: 'authenticated',
  AuditEvent: 'admin',
  Destination: 'read',
  Environment: 'read',
  Operation: 'read',
  Organization: 'authenticated',
  Project: 'read',
  // Where a recovered copy of the cluster listens: for the keys that may restore.
  RecoveryInstance: 'write',
  RestoreDrill: 'read',
  RestoreLog: 'read',
  Schedule: 'read',
  Snapshot: 'read',
  Webhook: 'admin',
};

const SCOPES_OF = { read: ['read'], write: ['read', 'write'], admin: ['read', 'write', 'admin'] } as const;
const SCOPE_NAME = { read: 'backups:read', write: 'backups:write', admin: 'admin' } as const;

interface Caller {
  name: string;
  key?: string;
  /** null: refused before any scope (no key, bad key). */
  level: keyof typeof SCOPES_OF | null;
  limited: boolean;
}

/** Objects of one "side": everything a key of the other side must never see. */
type Side = Record<string, { id: string; name?: string }>;

let app: TestApp;
let schema: GraphQLSchema;
let orgId: string;
let own: Side;
let sideB: Side;
let sideF: Side;
const callers: Caller[] = [];
let calls = 0;

async function seed(organizationId: string, tag: string, opts: { webhook: boolean; projectName: string }): Promise<Side> {
  const { db, secrets } = app.runtime.deps;
  const project = await makeProject(db, organizationId, { name: opts.projectName });
  const env = await makeEnvironment(db, secrets, project, { name: `${tag}-env`, filesPath: `/srv/${tag}-files` });
  const dest = await db.destination.create({ data: { organizationId, name: `${tag}-dest`, provider: 'LOCAL', config: { path: `/backups/${tag}` } } });
  await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: dest.id } });
  const snapshot = await db.snapshot.create({
    data: { organizationId, projectId: project.id, environmentId: env.id, kind: 'MANUAL', status: 'READY', includes: ['DB'], label: `${tag}-label` },
  });
  await db.snapshotCopy.create({ data: { snapshotId: snapshot.id, destinationId: dest.id, status: 'READY' } });
  // Queued, so that cancelOperation would succeed on it if a filter let it through.
  const operation = await db.operation.create({ data: { organizationId, environmentId: env.id, snapshotId: snapshot.id, type: 'VERIFY_SNAPSHOT', status: 'QUEUED', message: `${tag}-opmsg` } });
  const restoreOp = await db.operation.create({ data: { organizationId, environmentId: env.id, type: 'RESTORE', status: 'SUCCEEDED' } });
  const restoreLog = await db.restoreLog.create({
    data: { organizationId, snapshotId: snapshot.id, sourceEnvironmentId: env.id, targetEnvironmentId: env.id, operationId: restoreOp.id, includes: ['DB'], error: `${tag}-restore` },
  });
  const drillOp = await db.operation.create({ data: { organizationId, environmentId: env.id, snapshotId: snapshot.id, type: 'RESTORE_DRILL', status: 'FAILED' } });
  const drill = await db.restoreDrill.create({ data: { organizationId, environmentId: env.id, snapshotId: snapshot.id, operationId: drillOp.id, status: 'FAILED', error: `${tag}-drill`, rtoMs: 1234 } });
  const instanceOp = await db.operation.create({ data: { organizationId, environmentId: env.id, type: 'RECOVERY_INSTANCE', status: 'SUCCEEDED' } });
  const instance = await db.recoveryInstance.create({
    data: { organizationId, environmentId: env.id, operationId: instanceOp.id, pointInTime: new Date(), ttlMinutes: 60, status: 'READY', host: `${tag}.instance.example`, port: 54321 },
  });
  const schedule = await db.schedule.create({ data: { environmentId: env.id, dbCron: '0 3 * * *', dbRetention: {}, fullRetention: {} } });
  await db.scheduleDestination.create({ data: { scheduleId: schedule.id, destinationId: dest.id } });
  const alert = await db.alert.create({ data: { organizationId, environmentId: env.id, type: 'SNAPSHOT_FAILED', severity: 'WARNING', message: `${tag}-alert` } });
  const apiKey = await makeApiKey(db, organizationId, { scopes: ['admin'], projectIds: [project.id], name: `${tag}-key` });
  const side: Side = {
    Project: { id: project.id, name: project.name },
    Environment: { id: env.id, name: env.name },
    Destination: { id: dest.id, name: dest.name },
    Snapshot: { id: snapshot.id, name: `${tag}-label` },
    Operation: { id: operation.id, name: `${tag}-opmsg` },
    RestoreLog: { id: restoreLog.id, name: `${tag}-restore` },
    RestoreDrill: { id: drill.id, name: `${tag}-drill` },
    RecoveryInstance: { id: instance.id, name: `${tag}.instance.example` },
    Schedule: { id: schedule.id },
    Alert: { id: alert.id, name: `${tag}-alert` },
    ApiKey: { id: apiKey.id, name: `${tag}-key` },
    Files: { id: `/srv/${tag}-files`, name: `/backups/${tag}` },
  };
  if (opts.webhook) {
    const webhook = await db.webhook.create({ data: { organizationId, url: `https://${tag}.hooks.example/`, secretEncrypted: secrets.seal('x'.repeat(20)) } });
    await db.webhookDelivery.create({ data: { webhookId: webhook.id, alertId: alert.id } });
    side.Webhook = { id: webhook.id, name: `${tag}.hooks.example` };
    side.Organization = { id: organizationId };
    side.AuditEvent = { id: (await db.auditEvent.create({ data: { organizationId, action: 'destination.reveal_repository_password' } })).id };
  }
  return side;
}

beforeAll(async () => {
  // The generated selections are wide and deep on purpose; the limits are tested elsewhere.
  app = await startTestApp({ env: { MAX_COST: '10000000', MAX_DEPTH: '30', MAX_TOKENS: '1000000', MAX_ALIASES: '1000', BODY_LIMIT_BYTES: '10000000' } });
  const { db } = app.runtime.deps;
  orgId = (await makeOrganization(db)).id;
  const foreignOrg = (await makeOrganization(db)).id;
  own = await seed(orgId, 'mineaaa', { webhook: false, projectName: 'mineaaa-project' });
  sideB = await seed(orgId, 'zzbbbside', { webhook: false, projectName: 'zzbbbside-project' });
  sideF = await seed(foreignOrg, 'zzfffside', { webhook: true, projectName: 'zzfffside-project' });
  // The organization's webhook delivers alerts of both projects: admins only, and then only project A's for a key limited to A.
  const webhook = await db.webhook.create({ data: { organizationId: orgId, url: 'https://mineaaa.hooks.example/', secretEncrypted: app.runtime.deps.secrets.seal('x'.repeat(20)) } });
  await db.webhookDelivery.create({ data: { webhookId: webhook.id, alertId: sideB.Alert.id } });
  await db.webhookDelivery.create({ data: { webhookId: webhook.id, alertId: own.Alert.id } });
  own.Webhook = { id: webhook.id };
  own.Organization = { id: orgId };
  own.AuditEvent = { id: (await db.auditEvent.create({ data: { organizationId: orgId, action: 'destination.reveal_repository_password' } })).id };
  const projectA = own.Project.id;
  callers.push({ name: 'no key', level: null, limited: false });
  callers.push({ name: 'bad key', key: `bp_000000000000_${'A'.repeat(43)}`, level: null, limited: false });
  for (const level of ['read', 'write', 'admin'] as const) {
    const scopes = [SCOPE_NAME[level]];
    callers.push({ name: level, key: (await makeApiKey(db, orgId, { scopes })).secret, level, limited: false });
    callers.push({ name: `${level} limited to A`, key: (await makeApiKey(db, orgId, { scopes, projectIds: [projectA] })).secret, level, limited: true });
  }
  const res = await app.post({ query: getIntrospectionQuery() }, { key: callers.find((c) => c.name === 'admin')!.key });
  schema = buildClientSchema(((await res.json()) as { data: IntrospectionQuery }).data);
}, 180_000);

afterAll(async () => {
  console.log(`authorization matrix: ${calls} calls`);
  await app?.stop();
});

/** What a caller must never see: ids (raw and global) and names of the other side(s). */
function forbiddenStrings(c: Caller): string[] {
  const sides = c.limited ? [sideB, sideF] : [sideF];
  const out: string[] = [];
  for (const side of sides) {
    for (const [type, o] of Object.entries(side)) {
      out.push(o.id);
      if (type !== 'Files') out.push(gid(type, o.id));
      if (o.name) out.push(o.name);
    }
  }
  return out;
}

/** The side whose ids a caller's arguments name. */
const targetSide = (c: Caller) => (c.limited ? sideB : sideF);

const NODE_TYPES = Object.keys(NODE_SCOPE).sort((a, b) => b.length - a.length);

/** The node type an ID argument names, from its own name or, for `id`, from the field or input type's name. */
function idTypeFor(argName: string, context: string): string {
  const base = argName.replace(/Ids?$/, '').replace(/^(target|default|source)/, '');
  if (base && base !== 'id' && base !== 'ids') {
    const t = NODE_TYPES.find((n) => n.toLowerCase() === base.toLowerCase());
    if (t) return t;
  }
  const fromContext = NODE_TYPES.find((n) => context.toLowerCase().includes(n.toLowerCase()));
  if (fromContext) return fromContext;
  // node / nodes / anything generic: an environment is the richest object to leak.
  return 'Environment';
}

function valueFor(type: GraphQLInputType, argName: string, context: string, side: SidePicker): unknown {
  if (isNonNullType(type)) return valueFor(type.ofType, argName, context, side);
  if (isListType(type)) return [valueFor(type.ofType, argName, context, side)];
  if (isInputObjectType(type)) {
    const out: Record<string, unknown> = {};
    for (const f of Object.values(type.getFields())) {
      const named = getNamedType(f.type);
      // Required fields, and every optional field that names an object.
      if (isNonNullType(f.type) || named.name === 'ID') out[f.name] = valueFor(f.type, f.name, type.name, side);
    }
    return out;
  }
  if (isEnumType(type)) return type.getValues()[0].value;
  if (isScalarType(type)) {
    switch (type.name) {
      case 'ID': {
        const t = idTypeFor(argName, context);
        const from = side();
        const obj = from[t] ?? from.Environment;
        return gid(t, obj.id);
      }
      case 'Int':
        return 1;
      case 'Float':
        return 1;
      case 'Boolean':
        return false;
      case 'DateTime':
        return '2099-01-01T00:00:00Z';
      case 'BigInt':
        return '1';
      case 'JSON':
        return {};
      default:
        return argName.toLowerCase().includes('cron') ? '0 3 * * *' : 'matrix-value';
    }
  }
  throw new Error(`no value for ${String(type)}`);
}

function typeRef(type: GraphQLInputType): string {
  return String(type);
}

/** A wide selection: every field without required arguments, `depth` object levels deep. */
function selection(type: GraphQLOutputType, depth: number): string {
  const named = getNamedType(type);
  if (isScalarType(named) || isEnumType(named)) return '';
  if (depth === 0) return '{ __typename }';
  if (isUnionType(named)) return `{ __typename ${named.getTypes().map((t) => `... on ${t.name} ${selection(t, depth)}`).join(' ')} }`;
  if (isInterfaceType(named)) {
    // One implementation (the one the generated ids name): the fields of several would conflict.
    const impls = schema.getPossibleTypes(named);
    const impl = impls.find((t) => t.name === 'Environment') ?? impls[0];
    return `{ __typename ... on ${impl.name} ${selection(impl, depth)} }`;
  }
  if (!isObjectType(named)) return '';
  const parts = ['__typename'];
  for (const f of Object.values(named.getFields())) {
    if (f.args.some((a) => isNonNullType(a.type) && a.defaultValue === undefined)) continue;
    const sub = selection(f.type, depth - 1);
    const inner = getNamedType(f.type);
    if (!isScalarType(inner) && !isEnumType(inner) && sub === '') continue;
    parts.push(`${f.name} ${sub}`);
  }
  return `{ ${parts.join(' ')} }`;
}

/** Which side each ID argument, in order, names. */
type SidePicker = () => Side;

/** Every argument names an object of `side`. */
const allOf = (side: Side): SidePicker => () => side;
/** Only the i-th argument naming an object names one of `side`; the others name the caller's own. */
function onlyForeign(i: number, side: Side): SidePicker & { used: () => number } {
  let n = 0;
  return Object.assign(() => (n++ === i ? side : own), { used: () => n });
}

function operationFor(kind: 'query' | 'mutation' | 'subscription', field: GraphQLField<unknown, unknown>, pickSide: Side | SidePicker, depth: number) {
  const side = typeof pickSide === 'function' ? pickSide : allOf(pickSide);
  const variables: Record<string, unknown> = {};
  const defs: string[] = [];
  const args: string[] = [];
  for (const a of field.args as readonly GraphQLArgument[]) {
    const needed = isNonNullType(a.type) || getNamedType(a.type).name === 'ID' || isInputObjectType(getNamedType(a.type));
    if (!needed) continue;
    variables[a.name] = valueFor(a.type, a.name, field.name, side);
    defs.push(`$${a.name}: ${typeRef(a.type)}`);
    args.push(`${a.name}: $${a.name}`);
  }
  const query = `${kind}${defs.length ? `(${defs.join(', ')})` : ''} { ${field.name}${args.length ? `(${args.join(', ')})` : ''} ${selection(field.type, depth)} }`;
  return { query, variables };
}

type Result = { data?: Record<string, unknown> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };

async function post(c: Caller, query: string, variables: Record<string, unknown>): Promise<Result> {
  calls++;
  const res = await app.post({ query, variables }, { key: c.key });
  return (await res.json()) as Result;
}

const holds = (c: Caller, scope: Scope) => c.level !== null && (scope === 'authenticated' || (SCOPES_OF[c.level] as readonly string[]).includes(scope));

function expectRefused(c: Caller, scope: Scope, res: Result, what: string) {
  const code = res.errors?.[0]?.extensions?.code;
  if (c.level === null) {
    expect(code, what).toBe('UNAUTHENTICATED');
  } else {
    expect(code, what).toBe('FORBIDDEN');
    expect(res.errors?.[0].extensions?.requiredScope, what).toBe(SCOPE_NAME[scope as keyof typeof SCOPE_NAME]);
    expect(res.errors?.[0].message, what).toContain(SCOPE_NAME[scope as keyof typeof SCOPE_NAME]);
  }
}

/** Whether a field's answer is a success (a payload or an object) rather than null, an Error result or an error. */
function succeeded(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) return value.some(succeeded);
  // A connection filtered by a foreign object must come back empty.
  if (typeof value === 'object' && 'edges' in value) return succeeded((value as { edges: unknown[] }).edges);
  const t = (value as { __typename?: string }).__typename;
  return !(t && /Error$/.test(t));
}

function expectNoForeignData(c: Caller, res: Result, what: string) {
  const text = JSON.stringify(res);
  for (const s of forbiddenStrings(c)) {
    if (text.includes(s)) throw new Error(`${what}: the response shows ${s}, which the key may not see:\n${text.slice(0, 2000)}`);
  }
}

/** Rows that no call of the matrix may change: the other sides' objects, as stored. */
async function foreignState(sides: Side[]) {
  const { db } = app.runtime.deps;
  const ids = (t: string) => sides.map((s) => s[t]?.id).filter(Boolean) as string[];
  return JSON.stringify(
    await Promise.all([
      db.project.findMany({ where: { id: { in: ids('Project') } }, orderBy: { id: 'asc' } }),
      db.environment.findMany({ where: { id: { in: ids('Environment') } }, include: { destinations: true }, orderBy: { id: 'asc' } }),
      db.destination.findMany({ where: { id: { in: ids('Destination') } }, orderBy: { id: 'asc' } }),
      db.snapshot.findMany({ where: { id: { in: ids('Snapshot') } }, orderBy: { id: 'asc' } }),
      db.schedule.findMany({ where: { id: { in: ids('Schedule') } }, include: { destinations: true }, orderBy: { id: 'asc' } }),
      db.alert.findMany({ where: { id: { in: ids('Alert') } }, orderBy: { id: 'asc' } }),
      db.apiKey.findMany({ where: { id: { in: ids('ApiKey') } }, select: { id: true, revokedAt: true, name: true }, orderBy: { id: 'asc' } }),
      db.webhook.findMany({ where: { id: { in: ids('Webhook') } }, orderBy: { id: 'asc' } }),
      db.environmentSettings.findMany({ where: { environmentId: { in: ids('Environment') } }, orderBy: { environmentId: 'asc' } }),
      db.operation.findMany({
        where: { environmentId: { in: ids('Environment') } },
        select: { id: true, status: true, cancelRequestedAt: true, type: true, snapshotId: true },
        orderBy: { id: 'asc' },
      }),
      db.restoreLog.count({ where: { targetEnvironmentId: { in: ids('Environment') } } }),
      db.snapshotCopy.findMany({ where: { snapshot: { environmentId: { in: ids('Environment') } } }, orderBy: { id: 'asc' } }),
      db.environmentDestination.findMany({ where: { destinationId: { in: ids('Destination') } }, orderBy: { environmentId: 'asc' } }),
    ]),
    (_k, v) => (typeof v === 'bigint' ? v.toString() : v),
  );
}

describe('authorization matrix (generated from the schema)', () => {
  it('every query field, mutation, subscription and node type has a declared expectation', () => {
    const declared = new Set(Object.keys(EXPECT));
    const found: string[] = [];
    for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
      for (const f of Object.values(root!.getFields())) found.push(`${root!.name}.${f.name}`);
    }
    expect(found.filter((f) => !declared.has(f)), 'fields without an expectation in EXPECT').toEqual([]);
    expect([...declared].filter((f) => !found.includes(f)), 'expectations of fields that no longer exist').toEqual([]);
    const nodeTypes = schema.getPossibleTypes(schema.getType('Node') as never).map((t) => t.name).sort();
    expect(nodeTypes).toEqual(Object.keys(NODE_SCOPE).sort());
    // `object` must say what the arguments say: a field naming an object by id is checked as one.
    for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
      for (const f of Object.values(root!.getFields())) {
        const vars = JSON.stringify(operationFor('query', f, sideF, 0).variables);
        const namesObject = Object.entries(sideF).some(([t, o]) => t !== 'Files' && vars.includes(gid(t, o.id)));
        expect(namesObject, `${root!.name}.${f.name}: declared object=${EXPECT[`${root!.name}.${f.name}`]?.object}`).toBe(EXPECT[`${root!.name}.${f.name}`]?.object);
      }
    }
  });

  for (const kind of ['query', 'mutation'] as const) {
    it(`every ${kind} field, with every kind of key, on objects the key may not see`, async () => {
      const root = kind === 'query' ? schema.getQueryType()! : schema.getMutationType()!;
      // Keys limited to project A first, with project B and the other organization watched; then
      // the unlimited keys, for which project B is their own (markAllAlertsRead may touch it).
      for (const pass of [callers.filter((c) => c.limited || c.level === null), callers.filter((c) => !c.limited && c.level !== null)]) {
      const before = await foreignState(pass[0].limited || pass[0].level === null ? [sideB, sideF] : [sideF]);
      for (const field of Object.values(root.getFields())) {
        const exp = EXPECT[`${root.name}.${field.name}`];
        for (const c of pass) {
          const what = `${c.name} → ${root.name}.${field.name}`;
          const variants = [operationFor(kind, field, targetSide(c), 3)];
          // Own objects with one the key may not see among them (a schedule of A sent to B's destination): each in turn.
          for (let i = 0; ; i++) {
            const mixed = onlyForeign(i, targetSide(c));
            const call = operationFor(kind, field, mixed, 3);
            if (mixed.used() < 2 || i >= mixed.used()) break;
            variants.push(call);
          }
          for (const { query, variables } of variants) {
            const res = await post(c, query, variables);
            expectNoForeignData(c, res, what);
            if (!holds(c, exp.scope)) {
              expectRefused(c, exp.scope, res, what);
              expect(res.data?.[field.name] ?? null, what).toBeNull();
            } else if (exp.object) {
              expect(succeeded(res.data?.[field.name]), `${what} succeeded on an object the key may not see: ${JSON.stringify({ variables, res }).slice(0, 800)}`).toBe(false);
            }
          }
        }
      }
      expect(await foreignState(pass[0].limited || pass[0].level === null ? [sideB, sideF] : [sideF])).toBe(before);
      }
    });
  }

  it('node and nodes: every node type, with every kind of key', async () => {
    for (const type of Object.keys(NODE_SCOPE)) {
      const impl = schema.getType(type)!;
      const sel = selection(impl as GraphQLOutputType, 3);
      // Where a root field reads the same type by id, it must answer as node does: one rule per type.
      const rootName = type[0].toLowerCase() + type.slice(1);
      const rootField = schema.getQueryType()!.getFields()[rootName];
      const byRoot = rootField?.args.length === 1 && rootField.args[0].name === 'id' ? ` direct: ${rootName}(id: $own) { id }` : '';
      const query = `query($id: ID!, $own: ID!) { node(id: $id) { __typename ... on ${type} ${sel} } nodes(ids: [$id, $own]) { __typename ... on ${type} ${sel} } mine: node(id: $own) { __typename ... on ${type} { id } }${byRoot} }`;
      for (const c of callers) {
        const what = `${c.name} → node(${type})`;
        const foreign = targetSide(c)[type] ?? sideF[type];
        const mine = (own[type] ?? sideF[type]).id;
        const ownVisible = !!own[type] && holds(c, NODE_SCOPE[type]);
        const res = await post(c, query, { id: gid(type, foreign.id), own: gid(type, mine) });
        expectNoForeignData(c, res, what);
        if (c.level === null) {
          expect(res.errors?.[0].extensions?.code, what).toBe('UNAUTHENTICATED');
          continue;
        }
        expect(res.errors, what).toBeUndefined();
        expect(res.data?.node, what).toBeNull();
        expect((res.data?.nodes as unknown[])[0], what).toBeNull();
        // The rule lets the key see its own objects of the type, or none at all without the scope.
        if (type === 'ApiKey') continue; // a seeded key of project A is visible to admins only; checked in authorization-leaks
        expect(res.data?.mine === null, `${what}: own object visible`).toBe(!ownVisible);
        if (byRoot) expect(res.data?.direct ?? null, `${what}: ${rootName}(id) answers as node(id)`).toEqual(res.data?.mine === null ? null : { id: gid(type, mine) });
      }
    }
  });

  it('every subscription, with every kind of key', async () => {
    const root = schema.getSubscriptionType()!;
    const idleListeners = app.runtime.deps.events.subscriberCount('alertCreated');
    for (const field of Object.values(root.getFields())) {
      const exp = EXPECT[`${root.name}.${field.name}`];
      for (const c of callers) {
        const what = `${c.name} → Subscription.${field.name}`;
        const { query, variables } = operationFor('subscription', field, targetSide(c), 2);
        const listening = () => Promise.resolve(app.runtime.deps.events.subscriberCount('alertCreated'));
        // Earlier callers' subscriptions end on the server as their clients go (endsPromptly): wait
        // for that, so the count can only grow from here until this one listens.
        const before = await until(listening, (n) => n === idleListeners, 'earlier subscriptions to end');
        const client = app.ws(c.key);
        const first = new Promise<Result | { closed: true }>((resolve) => {
          client.subscribe({ query, variables }, {
            next: (v) => resolve(v as Result),
            error: (e) => resolve(Array.isArray(e) ? { errors: e } : { closed: true }),
            complete: () => resolve({ data: null }),
          });
        });
        calls++;
        if (holds(c, exp.scope) && !exp.object) {
          // Listening for new alerts: one the key may not see, then one it may; the first it hears must be its own.
          await until(listening, (n) => n > before, `${what} to listen`);
          const foreign = targetSide(c);
          const foreignOrg = foreign === sideF ? sideF.Organization.id : orgId;
          await raiseAlert(app.runtime.deps, { organizationId: foreignOrg, environmentId: foreign.Environment.id, type: 'SNAPSHOT_FAILED', severity: 'WARNING', message: 'zz-foreign-live-alert' });
          const ownAlert = await raiseAlert(app.runtime.deps, { organizationId: orgId, environmentId: own.Environment.id, type: 'SNAPSHOT_FAILED', severity: 'WARNING', message: 'own-live-alert' });
          const res = (await first) as Result;
          expect(JSON.stringify(res), what).not.toContain('zz-foreign-live-alert');
          expect((res.data?.[field.name] as { id: string }).id, what).toBe(gid('Alert', ownAlert));
          expectNoForeignData(c, res, what);
        } else {
          const res = await first;
          if ('closed' in res) {
            // No key or a bad key: the server may refuse the connection itself.
            expect(c.level, what).toBeNull();
          } else {
            expectNoForeignData(c, res, what);
            expect(res.errors?.length, `${what}: ${JSON.stringify(res)}`).toBeGreaterThan(0);
            if (!holds(c, exp.scope)) expectRefused(c, exp.scope, res, what);
          }
        }
        await client.dispose();
      }
    }
  });

  it('a key that may not restore learns nothing of its own environment’s recovery instances (host, port); one that may, does', async () => {
    const query = `query($id: ID!) { environment(id: $id) { recoveryInstances(first: 5) { totalCount edges { node { id host port connectionUri } } } } }`;
    for (const c of callers.filter((x) => x.level !== null && !x.limited)) {
      const res = await post(c, query, { id: gid('Environment', own.Environment.id) });
      const text = JSON.stringify(res);
      const list = (res.data?.environment as { recoveryInstances: { totalCount: number } }).recoveryInstances;
      if (c.level === 'read') {
        expect(list.totalCount, c.name).toBe(0);
        expect(text, c.name).not.toContain(own.RecoveryInstance.name!);
        expect(text, c.name).not.toContain('54321');
      } else {
        expect(list.totalCount, c.name).toBe(1);
        expect(text, c.name).toContain(`postgresql://${own.RecoveryInstance.name}:54321/`);
      }
    }
  });
});
