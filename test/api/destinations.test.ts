import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateDestinationDocument,
  DeleteDestinationDocument,
  DestinationDocument,
  DestinationsDocument,
  RevealRepositoryPasswordDocument,
  SetEnvironmentDestinationsDocument,
  TestDestinationDocument,
  UpdateDestinationDocument,
  type CreateDestinationInput,
} from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { makeLiveEnvironment, repositoryPassword } from '../harness/live-environment.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { follow, restic, startSnapshot, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let s3: StartedS3rver;
let admin: string;
let writer: string;
let orgId: string;
let tmp: string;

beforeAll(async () => {
  [app, s3] = await Promise.all([startTestApp(), startS3rver({ buckets: ['backups', 'other'] })]);
  await app.startWorker();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  admin = (await makeApiKey(app.runtime.db, org.id, { scopes: ['admin'] })).secret;
  writer = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'] })).secret;
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-dest-'));
});
afterAll(async () => {
  await app?.stop();
  await s3?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const s3rverInput = (name: string, over: Partial<CreateDestinationInput> = {}): CreateDestinationInput => ({
  name,
  provider: 'CUSTOM',
  endpoint: s3.endpoint,
  bucket: 'backups',
  prefix: name,
  ...S3RVER_CREDENTIALS,
  ...over,
});

async function create(input: CreateDestinationInput, key = admin) {
  const res = await app.gql(CreateDestinationDocument, { input }, { key });
  return res.data!.createDestination;
}

async function createOk(input: CreateDestinationInput) {
  const r = await create(input);
  if (r.__typename !== 'DestinationPayload') throw new Error(JSON.stringify(r));
  return r.destination;
}

describe('destinations: create, read, update, delete', () => {
  it('creates each provider; credentials come back redacted only and are sealed at rest', async () => {
    const local = await createOk({ name: 'disk', provider: 'LOCAL', path: path.join(tmp, 'disk') });
    expect(local).toMatchObject({ provider: 'LOCAL', path: path.join(tmp, 'disk'), location: path.join(tmp, 'disk'), credentials: null, status: 'UNKNOWN' });

    const aws = await createOk({ name: 'aws', provider: 'S3', bucket: 'acme-backups', region: 'eu-central-1', prefix: '/prod/', accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' });
    expect(aws).toMatchObject({ prefix: 'prod', location: 's3:https://s3.eu-central-1.amazonaws.com/acme-backups/prod', credentials: { accessKeyId: '****MPLE', secretAccessKey: '********' } });

    const r2 = await createOk({ name: 'r2', provider: 'R2', bucket: 'acme', accountId: 'abc123', jurisdiction: 'eu', accessKeyId: 'k', secretAccessKey: 's' });
    expect(r2.location).toBe('s3:https://abc123.eu.r2.cloudflarestorage.com/acme');
    const r2default = await createOk({ name: 'r2 default', provider: 'R2', bucket: 'acme', accountId: 'abc123', accessKeyId: 'k', secretAccessKey: 's' });
    expect(r2default.location).toBe('s3:https://abc123.r2.cloudflarestorage.com/acme');

    const b2 = await createOk({ name: 'b2', provider: 'B2', bucket: 'acme', region: 'us-west-004', accessKeyId: 'k', secretAccessKey: 's' });
    expect(b2.location).toBe('s3:https://s3.us-west-004.backblazeb2.com/acme');

    const minio = await createOk({ name: 'minio', provider: 'MINIO', bucket: 'acme', endpoint: 'https://minio.internal:9000', accessKeyId: 'k', secretAccessKey: 's' });
    expect(minio.location).toBe('s3:https://minio.internal:9000/acme');
    const custom = await createOk(s3rverInput('custom'));
    expect(custom.location).toBe(`s3:${s3.endpoint}/backups/custom`);

    const row = await app.runtime.db.destination.findFirstOrThrow({ where: { organizationId: orgId, name: 'aws' } });
    expect(row.credentialsEncrypted).not.toContain('wJalr');
    expect(JSON.stringify(row.config)).not.toContain('wJalr');
    expect(JSON.parse(app.runtime.deps.secrets.open(row.credentialsEncrypted!))).toEqual({ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' });

    const list = await app.gql(DestinationsDocument, { first: 50 }, { key: admin });
    expect(list.data?.destinations.totalCount).toBe(7);
    expect(JSON.stringify(list)).not.toContain('wJalr');
    const one = await app.gql(DestinationDocument, { id: aws.id }, { key: admin });
    expect(one.data?.destination).toMatchObject({ name: 'aws', region: 'eu-central-1' });
  });

  it('validates per provider, naming the fields', async () => {
    const cases: [CreateDestinationInput, string[]][] = [
      [{ name: 'x1', provider: 'LOCAL', path: 'relative/dir' }, ['input', 'path']],
      [{ name: 'x2', provider: 'LOCAL', path: '/ok', bucket: 'nope' }, ['input']],
      [{ name: 'x3', provider: 'S3', bucket: 'acme', accessKeyId: 'k', secretAccessKey: 's' }, ['input', 'region']],
      [{ name: 'x4', provider: 'R2', bucket: 'acme', accessKeyId: 'k', secretAccessKey: 's' }, ['input', 'accountId']],
      [{ name: 'x5', provider: 'R2', bucket: 'acme', accountId: 'a', jurisdiction: 'mars', accessKeyId: 'k', secretAccessKey: 's' }, ['input', 'jurisdiction']],
      [{ name: 'x6', provider: 'CUSTOM', bucket: 'acme', accessKeyId: 'k', secretAccessKey: 's' }, ['input', 'endpoint']],
      [{ name: 'x7', provider: 'MINIO', bucket: 'acme', endpoint: 'ftp://host', accessKeyId: 'k', secretAccessKey: 's' }, ['input', 'endpoint']],
      [{ name: 'x8', provider: 'CUSTOM', bucket: 'Bad_Bucket', endpoint: 'http://h:9000', accessKeyId: 'k', secretAccessKey: 's' }, ['input', 'bucket']],
      [{ name: 'x9', provider: 'B2', bucket: 'acme', region: 'us-west-004', accessKeyId: 'k' }, ['input', 'secretAccessKey']],
    ];
    for (const [input, fieldPath] of cases) {
      const r = await create(input);
      expect(r, JSON.stringify(input)).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
      if (r.__typename === 'ValidationError') expect(r.fields.map((f) => f.path), JSON.stringify(input)).toContainEqual(fieldPath);
    }
    expect(await app.runtime.db.destination.count({ where: { name: { startsWith: 'x' }, organizationId: orgId } })).toBe(0);
    expect(await create({ name: 'disk', provider: 'LOCAL', path: '/x' })).toMatchObject({ __typename: 'ConflictError', code: 'NAME_TAKEN' });
  });

  it('needs admin to list or change destinations; others see FORBIDDEN', async () => {
    const r = await app.gql(CreateDestinationDocument, { input: { name: 'w', provider: 'LOCAL', path: '/w' } }, { key: writer });
    expect(r.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const list = await app.gql(DestinationsDocument, { first: 5 }, { key: writer });
    expect(list.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });

  it('updates settings and credentials; the location of a destination with snapshots cannot move', async () => {
    const d = await createOk(s3rverInput('movable'));
    const up = await app.gql(UpdateDestinationDocument, { input: { id: d.id, name: 'moved', prefix: 'elsewhere', accessKeyId: 'NEWKEY1234', secretAccessKey: 'x' } }, { key: admin });
    expect(up.data?.updateDestination).toMatchObject({ destination: { name: 'moved', prefix: 'elsewhere', credentials: { accessKeyId: '****1234' } } });
    const half = await app.gql(UpdateDestinationDocument, { input: { id: d.id, accessKeyId: 'only-one' } }, { key: admin });
    expect(half.data?.updateDestination).toMatchObject({ __typename: 'ValidationError' });
    const wrongField = await app.gql(UpdateDestinationDocument, { input: { id: d.id, path: '/not/for/s3' } }, { key: admin });
    expect(wrongField.data?.updateDestination).toMatchObject({ __typename: 'ValidationError' });

    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 20 });
    await takeSnapshot(app, admin, env.id, { includes: ['DB'] });
    const local = await app.gql(UpdateDestinationDocument, { input: { id: gid('Destination', env.destinationId), path: path.join(tmp, 'moved-away') } }, { key: admin });
    expect(local.data?.updateDestination).toMatchObject({ __typename: 'ConflictError', code: 'DESTINATION_IN_USE' });
    const rename = await app.gql(UpdateDestinationDocument, { input: { id: gid('Destination', env.destinationId), name: 'renamed ok' } }, { key: admin });
    expect(rename.data?.updateDestination).toMatchObject({ destination: { name: 'renamed ok' } });
  });

  it('refuses to delete a destination that holds snapshots; detach forgets it and leaves the data', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 20 });
    const { snapshotId } = await takeSnapshot(app, admin, env.id, { includes: ['DB'] });
    const id = gid('Destination', env.destinationId);
    const refused = await app.gql(DeleteDestinationDocument, { input: { id } }, { key: admin });
    expect(refused.data?.deleteDestination).toMatchObject({ __typename: 'ConflictError', code: 'DESTINATION_IN_USE' });

    const password = await repositoryPassword(app, env.destinationId);
    const before = await restic(env.repositoryPath, password, 'snapshots', '--json');
    const detached = await app.gql(DeleteDestinationDocument, { input: { id, detach: true } }, { key: admin });
    expect(detached.data?.deleteDestination).toMatchObject({ __typename: 'DeletePayload', deletedId: id });
    expect(await app.runtime.db.destination.findUnique({ where: { id: env.destinationId } })).toBeNull();
    // The repository is untouched and still readable with its password.
    expect(await restic(env.repositoryPath, password, 'snapshots', '--json')).toBe(before);
    expect(JSON.parse(before)).toHaveLength(1);
    const snap = await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: decodeGlobalID(snapshotId).id } });
    expect(snap.status).toBe('DELETED');

    const unused = await createOk({ name: 'unused', provider: 'LOCAL', path: path.join(tmp, 'unused') });
    const gone = await app.gql(DeleteDestinationDocument, { input: { id: unused.id } }, { key: admin });
    expect(gone.data?.deleteDestination).toMatchObject({ __typename: 'DeletePayload' });
  });

  it('sets the destinations of an environment, in order; refuses unknown or foreign ones', async () => {
    const project = await makeProject(app.runtime.db, orgId);
    const env = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, project);
    const a = await createOk({ name: 'first', provider: 'LOCAL', path: path.join(tmp, 'first') });
    const b = await createOk({ name: 'second', provider: 'LOCAL', path: path.join(tmp, 'second') });
    const set = (ids: string[]) => app.gql(SetEnvironmentDestinationsDocument, { input: { environmentId: gid('Environment', env.id), destinationIds: ids } }, { key: admin });
    expect((await set([b.id, a.id])).data?.setEnvironmentDestinations).toMatchObject({ environment: { destinations: [{ name: 'second' }, { name: 'first' }] } });
    expect((await set([a.id])).data?.setEnvironmentDestinations).toMatchObject({ environment: { destinations: [{ name: 'first' }] } });

    const other = await makeOrganization(app.runtime.db);
    const foreign = await app.runtime.db.destination.create({ data: { organizationId: other.id, name: 'foreign', provider: 'LOCAL', config: { path: '/f' } } });
    expect((await set([a.id, gid('Destination', foreign.id)])).data?.setEnvironmentDestinations).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    expect((await set([a.id, a.id])).data?.setEnvironmentDestinations).toMatchObject({ __typename: 'ValidationError' });
    expect((await app.gql(DestinationDocument, { id: gid('Destination', foreign.id) }, { key: admin })).data?.destination).toBeNull();
  });
});

describe('pseudo-filesystems', () => {
  it('refuses a LOCAL path on /proc, /sys, /dev, a cgroup mount or a symlink into one, on create and update; nothing is recorded', async () => {
    const link = path.join(tmp, 'to-proc');
    await fs.symlink('/proc/self', link);
    const before = await app.runtime.db.destination.count();
    for (const p of ['/proc/backplane/repo', '/proc', '/sys/kernel/backplane', '/dev/backplane', '/sys/fs/cgroup/pids/backplane', path.join(link, 'repo')]) {
      const r = await create({ name: 'pseudo', provider: 'LOCAL', path: p });
      expect(r, p).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'path'], message: expect.stringMatching(/pseudo-filesystem/) }] });
    }
    expect(await app.runtime.db.destination.count()).toBe(before);
    const d = await createOk({ name: 'moves-to-proc', provider: 'LOCAL', path: path.join(tmp, 'moves') });
    const moved = await app.gql(UpdateDestinationDocument, { input: { id: d.id, path: '/proc/1/backplane' } }, { key: admin });
    expect(moved.data?.updateDestination).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'path'] }] });
    const row = await app.runtime.db.destination.findUniqueOrThrow({ where: { id: decodeGlobalID(d.id).id } });
    expect((row.config as { path: string }).path).toBe(path.join(tmp, 'moves'));
  });

  it('testDestination on a directory that never answers (a row made before the check) fails in time, leaves no process behind, and the API answers meanwhile', async () => {
    // A recursive mkdir under /proc never returns in Node 20: the probe must give up, not hang.
    const row = await app.runtime.db.destination.create({ data: { organizationId: orgId, name: 'legacy-proc', provider: 'LOCAL', config: { path: '/proc/1/backplane-repo' } } });
    const children = async () => {
      const tasks = await fs.readdir(`/proc/${process.pid}/task`);
      const all = await Promise.all(tasks.map((t) => fs.readFile(`/proc/${process.pid}/task/${t}/children`, 'utf8').catch(() => '')));
      return all.join(' ').trim().split(/\s+/).filter(Boolean);
    };
    const childrenBefore = await children();
    const probing = app.gql(TestDestinationDocument, { input: { id: gid('Destination', row.id) } }, { key: admin });
    // The event loop is free while the probe hangs in its own process.
    const meanwhile = await app.gql(DestinationDocument, { id: gid('Destination', row.id) }, { key: admin });
    expect(meanwhile.data?.destination).toMatchObject({ name: 'legacy-proc' });
    const res = await probing;
    const r = res.data?.testDestination;
    if (r?.__typename !== 'DestinationTestPayload') throw new Error(JSON.stringify(res));
    expect(r).toMatchObject({ ok: false, errorKind: 'UNREACHABLE', error: expect.stringMatching(/did not answer within/) });
    expect(r.steps).toEqual([expect.objectContaining({ step: 'WRITE', ok: false })]);
    expect(r.destination).toMatchObject({ status: 'UNREACHABLE' });
    expect((await children()).filter((pid) => !childrenBefore.includes(pid))).toEqual([]);
  }, 60_000);

  it('a snapshot into such a row fails at once with the reason, instead of creating the repository there forever', async () => {
    const row = await app.runtime.db.destination.create({ data: { organizationId: orgId, name: 'legacy-sys', provider: 'LOCAL', config: { path: '/sys/kernel/backplane-repo' } } });
    const env = await makeLiveEnvironment(app, { organizationId: orgId, destinationId: row.id, rows: 10 });
    const { operationId } = await startSnapshot(app, admin, env.id, { includes: ['DB'] });
    const states = await follow(app, admin, operationId);
    expect(states.at(-1)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/legacy-sys is under \/sys, a system pseudo-filesystem/) });
  }, 60_000);
});

describe('testDestination', () => {
  it('writes, reads, lists and deletes a probe object and times each step', async () => {
    for (const input of [s3rverInput('probe-ok'), { name: 'probe-local', provider: 'LOCAL' as const, path: path.join(tmp, 'probe-local') }]) {
      const d = await createOk(input);
      const res = await app.gql(TestDestinationDocument, { input: { id: d.id } }, { key: admin });
      const r = res.data?.testDestination;
      if (r?.__typename !== 'DestinationTestPayload') throw new Error(JSON.stringify(res));
      expect(r.ok).toBe(true);
      expect(r.steps.map((s) => [s.step, s.ok])).toEqual([['WRITE', true], ['READ', true], ['LIST', true], ['DELETE', true]]);
      expect(r.steps.every((s) => s.latencyMs >= 0)).toBe(true);
      expect(r.destination).toMatchObject({ status: 'HEALTHY', lastError: null });
      expect(r.destination.lastCheckedAt).toBeTruthy();
    }
    // Nothing left behind in the bucket.
    const left = await fs.readdir(path.join(s3.directory, 'backups', 'probe-ok')).catch(() => []);
    expect(left).toEqual([]);
  });

  it('tells a wrong key, a missing bucket and an unreachable endpoint apart; unreachable raises an alert', async () => {
    const wrongKey = await createOk(s3rverInput('wrong-key', { accessKeyId: 'NOT-S3RVER' }));
    const noBucket = await createOk(s3rverInput('no-bucket', { bucket: 'does-not-exist' }));
    const unreachable = await createOk(s3rverInput('unreachable', { endpoint: 'http://127.0.0.1:1' }));
    const results = [];
    for (const d of [wrongKey, noBucket, unreachable]) {
      const r = (await app.gql(TestDestinationDocument, { input: { id: d.id } }, { key: admin })).data?.testDestination;
      if (r?.__typename !== 'DestinationTestPayload') throw new Error(JSON.stringify(r));
      expect(r.ok).toBe(false);
      expect(r.steps[0]).toMatchObject({ step: 'WRITE', ok: false });
      expect(r.destination).toMatchObject({ status: 'UNREACHABLE', lastError: r.error });
      results.push(r);
    }
    expect(results.map((r) => r.errorKind)).toEqual(['AUTH', 'NO_BUCKET', 'UNREACHABLE']);
    expect(results[0].error).toMatch(/credentials/);
    expect(results[1].error).toMatch(/bucket does not exist.*does-not-exist/);
    expect(results[2].error).toMatch(/Nothing answers at the endpoint/);

    const alerts = await app.runtime.db.alert.findMany({ where: { organizationId: orgId, type: 'DESTINATION_UNREACHABLE' } });
    expect(alerts.some((a) => a.message.includes('unreachable'))).toBe(true);
    // A second failing test of a destination already known unreachable does not repeat the alert.
    await app.gql(TestDestinationDocument, { input: { id: unreachable.id } }, { key: admin });
    expect(await app.runtime.db.alert.count({ where: { organizationId: orgId, type: 'DESTINATION_UNREACHABLE' } })).toBe(alerts.length);
  });
});

describe('revealRepositoryPassword', () => {
  it('shows the password to admins only, records each reveal, and the password opens the repository', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 20 });
    const id = gid('Destination', env.destinationId);
    const forbidden = await app.gql(RevealRepositoryPasswordDocument, { input: { id } }, { key: writer });
    expect(forbidden.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const early = await app.gql(RevealRepositoryPasswordDocument, { input: { id } }, { key: admin });
    expect(early.data?.revealRepositoryPassword).toMatchObject({ __typename: 'ConflictError', code: 'DESTINATION_NO_REPOSITORY' });

    await takeSnapshot(app, admin, env.id, { includes: ['DB'] });
    const res = await app.gql(RevealRepositoryPasswordDocument, { input: { id } }, { key: admin });
    const r = res.data?.revealRepositoryPassword;
    if (r?.__typename !== 'RepositoryPasswordPayload') throw new Error(JSON.stringify(res));
    expect(r.repository).toBe(env.repositoryPath);
    expect(JSON.parse(await restic(r.repository, r.password, 'snapshots', '--json'))).toHaveLength(1);
    const audit = await app.runtime.db.auditEvent.findMany({ where: { organizationId: orgId, targetId: env.destinationId } });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ action: 'destination.reveal_repository_password' });
    expect(audit[0].apiKeyId).toBeTruthy();
  });
});
