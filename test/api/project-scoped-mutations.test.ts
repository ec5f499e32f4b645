/**
 * Each mutation's service-level project filter, proven one by one with keys limited to project A
 * acting on project B (issue 22.2): the answer is the same NotFoundError as for an id that never
 * existed, and B's rows are unchanged. The same call on A's own object succeeds, so a test cannot
 * pass by refusing everything. (The generated matrix covers the same ground for every field;
 * these read as the promise they keep.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let writeA: string;
let adminA: string;
interface Side {
  env: string;
  dest: string;
  snapshot: string;
  operation: string;
}
let A: Side;
let B: Side;

async function side(orgId: string, name: string): Promise<Side> {
  const { db, secrets } = app.runtime.deps;
  const project = await makeProject(db, orgId, { name });
  const env = await makeEnvironment(db, secrets, project);
  const dest = await db.destination.create({ data: { organizationId: orgId, name: `${name}-dest`, provider: 'LOCAL', config: { path: `/backups/${name}` } } });
  await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: dest.id } });
  const snapshot = await db.snapshot.create({ data: { organizationId: orgId, projectId: project.id, environmentId: env.id, kind: 'MANUAL', status: 'READY', includes: ['DB'] } });
  await db.snapshotCopy.create({ data: { snapshotId: snapshot.id, destinationId: dest.id, status: 'READY', repoSnapshotId: 'a'.repeat(64) } });
  const operation = await db.operation.create({ data: { organizationId: orgId, environmentId: env.id, snapshotId: snapshot.id, type: 'VERIFY_SNAPSHOT', status: 'QUEUED' } });
  await db.schedule.create({ data: { environmentId: env.id, dbCron: '0 3 * * *', dbRetention: {}, fullRetention: {} } });
  return { env: env.id, dest: dest.id, snapshot: snapshot.id, operation: operation.id };
}

beforeAll(async () => {
  app = await startTestApp();
  const { db } = app.runtime.deps;
  const orgId = (await makeOrganization(db)).id;
  A = await side(orgId, 'scoped-a');
  B = await side(orgId, 'scoped-b');
  const projectA = (await db.environment.findUniqueOrThrow({ where: { id: A.env } })).projectId;
  writeA = (await makeApiKey(db, orgId, { scopes: ['backups:write'], projectIds: [projectA] })).secret;
  adminA = (await makeApiKey(db, orgId, { scopes: ['admin'], projectIds: [projectA] })).secret;
});
afterAll(() => app?.stop());

async function call(key: string, mutation: string, input: Record<string, unknown>) {
  const res = await app.post({ query: `mutation ($input: ${inputType(mutation)}!) { ${mutation}(input: $input) { __typename ... on Error { code } } }`, variables: { input } }, { key });
  const body = (await res.json()) as { data?: Record<string, { __typename: string; code?: string }>; errors?: unknown[] };
  expect(body.errors, mutation).toBeUndefined();
  return body.data![mutation];
}

const INPUT_TYPES: Record<string, string> = {
  cancelOperation: 'CancelOperationInput',
  createSnapshot: 'CreateSnapshotInput',
  deleteSnapshot: 'SnapshotIdInput',
  pinSnapshot: 'PinSnapshotInput',
  unpinSnapshot: 'SnapshotIdInput',
  verifySnapshot: 'VerifySnapshotInput',
  copySnapshot: 'CopySnapshotInput',
  restoreSnapshot: 'RestoreSnapshotInput',
  upsertSchedule: 'UpsertScheduleInput',
  deleteSchedule: 'ScheduleEnvironmentInput',
  pauseSchedule: 'ScheduleEnvironmentInput',
  resumeSchedule: 'ScheduleEnvironmentInput',
  runScheduleNow: 'RunScheduleNowInput',
  setEnvironmentDestinations: 'SetEnvironmentDestinationsInput',
  testDestination: 'DestinationIdInput',
  revealRepositoryPassword: 'DestinationIdInput',
  updateDestination: 'UpdateDestinationInput',
  deleteDestination: 'DeleteDestinationInput',
};
const inputType = (m: string) => INPUT_TYPES[m];

/** B's rows a refused call must leave exactly as they were. */
async function stateOfB() {
  const { db } = app.runtime.deps;
  return JSON.stringify(
    await Promise.all([
      db.operation.findMany({ where: { environmentId: B.env }, orderBy: { id: 'asc' } }),
      db.snapshot.findMany({ where: { environmentId: B.env }, orderBy: { id: 'asc' } }),
      db.snapshotCopy.findMany({ where: { OR: [{ destinationId: B.dest }, { snapshot: { environmentId: B.env } }] }, orderBy: { id: 'asc' } }),
      db.restoreLog.count({ where: { OR: [{ targetEnvironmentId: B.env }, { sourceEnvironmentId: B.env }] } }),
      db.schedule.findMany({ where: { environmentId: B.env }, include: { destinations: true } }),
      db.environmentDestination.findMany({ where: { OR: [{ environmentId: B.env }, { destinationId: B.dest }] }, orderBy: { environmentId: 'asc' } }),
      db.destination.findUnique({ where: { id: B.dest } }),
      db.auditEvent.count({ where: { targetId: B.dest } }),
    ]),
    (_k, v) => (typeof v === 'bigint' ? v.toString() : v),
  );
}

const NOT_FOUND = (code: string) => ({ __typename: 'NotFoundError', code });

describe('a write key limited to project A, on project B', () => {
  const cases: [string, () => Record<string, unknown>, string][] = [
    ['cancelOperation', () => ({ id: gid('Operation', B.operation) }), 'OPERATION_NOT_FOUND'],
    ['createSnapshot', () => ({ environmentId: gid('Environment', B.env) }), 'ENVIRONMENT_NOT_FOUND'],
    ['deleteSnapshot', () => ({ id: gid('Snapshot', B.snapshot) }), 'SNAPSHOT_NOT_FOUND'],
    ['pinSnapshot', () => ({ id: gid('Snapshot', B.snapshot) }), 'SNAPSHOT_NOT_FOUND'],
    ['unpinSnapshot', () => ({ id: gid('Snapshot', B.snapshot) }), 'SNAPSHOT_NOT_FOUND'],
    ['verifySnapshot', () => ({ snapshotId: gid('Snapshot', B.snapshot) }), 'SNAPSHOT_NOT_FOUND'],
    ['copySnapshot', () => ({ snapshotId: gid('Snapshot', B.snapshot), destinationId: gid('Destination', A.dest) }), 'SNAPSHOT_NOT_FOUND'],
    ['copySnapshot', () => ({ snapshotId: gid('Snapshot', A.snapshot), destinationId: gid('Destination', B.dest) }), 'DESTINATION_NOT_FOUND'],
    ['restoreSnapshot', () => ({ snapshotId: gid('Snapshot', B.snapshot) }), 'SNAPSHOT_NOT_FOUND'],
    ['restoreSnapshot', () => ({ snapshotId: gid('Snapshot', A.snapshot), targetEnvironmentId: gid('Environment', B.env) }), 'ENVIRONMENT_NOT_FOUND'],
    ['upsertSchedule', () => ({ environmentId: gid('Environment', B.env), dbCron: '0 3 * * *' }), 'ENVIRONMENT_NOT_FOUND'],
    ['upsertSchedule', () => ({ environmentId: gid('Environment', A.env), dbCron: '0 3 * * *', destinationIds: [gid('Destination', B.dest)] }), 'DESTINATION_NOT_FOUND'],
    ['deleteSchedule', () => ({ environmentId: gid('Environment', B.env) }), 'ENVIRONMENT_NOT_FOUND'],
    ['pauseSchedule', () => ({ environmentId: gid('Environment', B.env) }), 'ENVIRONMENT_NOT_FOUND'],
    ['resumeSchedule', () => ({ environmentId: gid('Environment', B.env) }), 'ENVIRONMENT_NOT_FOUND'],
    ['runScheduleNow', () => ({ environmentId: gid('Environment', B.env), kind: 'DB' }), 'ENVIRONMENT_NOT_FOUND'],
  ];
  for (const [mutation, input, code] of cases) {
    it(`${mutation} → ${code}, nothing of B changed`, async () => {
      const before = await stateOfB();
      expect(await call(writeA, mutation, input())).toEqual(NOT_FOUND(code));
      expect(await stateOfB()).toBe(before);
    });
  }

  it("the same key acts on project A's own objects (the refusals above are about B, not the key)", async () => {
    expect((await call(writeA, 'pinSnapshot', { id: gid('Snapshot', A.snapshot) })).__typename).toBe('SnapshotPayload');
    expect((await call(writeA, 'upsertSchedule', { environmentId: gid('Environment', A.env), dbCron: '0 3 * * *', destinationIds: [gid('Destination', A.dest)] })).__typename).toBe('SchedulePayload');
    expect((await call(writeA, 'cancelOperation', { id: gid('Operation', A.operation) })).__typename).toBe('OperationPayload');
  });

  it('operation(id) of project B is null, as for an id that never existed', async () => {
    const res = await app.post({ query: 'query ($id: ID!) { operation(id: $id) { id } }', variables: { id: gid('Operation', B.operation) } }, { key: writeA });
    expect(await res.json()).toEqual({ data: { operation: null } });
  });
});

describe('an admin key limited to project A, on project B’s destination', () => {
  const cases: [string, () => Record<string, unknown>][] = [
    ['setEnvironmentDestinations', () => ({ environmentId: gid('Environment', A.env), destinationIds: [gid('Destination', B.dest)] })],
    ['testDestination', () => ({ id: gid('Destination', B.dest) })],
    ['revealRepositoryPassword', () => ({ id: gid('Destination', B.dest) })],
    ['updateDestination', () => ({ id: gid('Destination', B.dest), name: 'taken-over' })],
    ['deleteDestination', () => ({ id: gid('Destination', B.dest), detach: true })],
  ];
  for (const [mutation, input] of cases) {
    it(`${mutation} → DESTINATION_NOT_FOUND, nothing of B changed`, async () => {
      const before = await stateOfB();
      expect(await call(adminA, mutation, input())).toEqual(NOT_FOUND('DESTINATION_NOT_FOUND'));
      expect(await stateOfB()).toBe(before);
    });
  }

  it("the same key manages project A's destination", async () => {
    expect((await call(adminA, 'updateDestination', { id: gid('Destination', A.dest), name: 'scoped-a-renamed' })).__typename).toBe('DestinationPayload');
  });
});
