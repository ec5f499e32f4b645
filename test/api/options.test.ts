/**
 * The options other platforms have (issue 18, item 4), each through the API against a running
 * server and worker: snapshots sent to chosen destinations, the snapshot list filtered by what a
 * snapshot holds, an environment looked up by project and name (and listed by type), expiry of
 * manual snapshots from retentionDays, retention by "last N" and by age window per tier, files-only
 * schedules, a project's schedules in one list, and the operator's lock against restores.
 */
import fs from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientMain } from '../../src/cli/client/main.ts';
import type { TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeProject } from '../harness/factories.ts';
import { makeLiveEnvironment, repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { jobsWithKey, runJobNow, useManualClock, waitFor } from '../harness/schedule-helpers.ts';
import { follow, restic, startWorkerSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let admin: string;
let writer: string;
let orgId: string;
let live: LiveEnvironment;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function q(query: string, variables: Json, key: string): Promise<Json> {
  const res = await app.post({ query, variables }, { key });
  const body = (await res.json()) as { data?: Json; errors?: unknown[] };
  if (body.errors) return { errors: body.errors };
  return body.data!;
}

const rowId = (globalId: string) => decodeGlobalID(globalId).id;

beforeAll(async () => {
  ({ app, key: admin, orgId } = await startWorkerSuite());
  writer = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:write'], name: 'deploy bot' })).secret;
  live = await makeLiveEnvironment(app, { organizationId: orgId, name: 'shop-prod', rows: 20 });
}, 120_000);
afterAll(() => app?.stop());

const CREATE = `mutation($input: CreateSnapshotInput!) { createSnapshot(input: $input) {
  __typename ... on Error { code message }
  ... on SnapshotOperationPayload { operation { id } snapshot { id expiresAt copies { destination { id } } } } } }`;

describe('createSnapshot(destinationIds)', () => {
  it('sends a manual snapshot to the chosen destinations only; a destination the key may not see is refused and nothing is recorded', async () => {
    const { db } = app.runtime;
    const otherPath = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-chosen-'));
    const chosen = await db.destination.create({ data: { organizationId: orgId, name: 'chosen', provider: 'LOCAL', config: { path: otherPath } } });
    // A write key sees only destinations its environments use: this one is no one's yet.
    const before = await db.snapshot.count({ where: { environmentId: live.id } });
    const refused = await q(CREATE, { input: { environmentId: gid('Environment', live.id), destinationIds: [gid('Destination', chosen.id)] } }, writer);
    expect(refused.createSnapshot).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    expect(await db.snapshot.count({ where: { environmentId: live.id } })).toBe(before);

    const res = await q(CREATE, { input: { environmentId: gid('Environment', live.id), includes: ['DB'], destinationIds: [gid('Destination', chosen.id)] } }, admin);
    expect(res.createSnapshot.__typename).toBe('SnapshotOperationPayload');
    expect(res.createSnapshot.snapshot.copies.map((c: Json) => rowId(c.destination.id))).toEqual([chosen.id]);
    expect((await follow(app, admin, res.createSnapshot.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
    const snapshotId = rowId(res.createSnapshot.snapshot.id);
    // restic reads it from the chosen destination; the environment's own never got it.
    const inChosen = JSON.parse(await restic(otherPath, await repositoryPassword(app, chosen.id), 'snapshots', '--json')) as { tags: string[] }[];
    expect(inChosen.flatMap((s) => s.tags)).toContain(`snapshot:${snapshotId}`);
    expect(await db.snapshotCopy.count({ where: { snapshotId, destinationId: live.destinationId } })).toBe(0);

    // Left out: the environment's destinations, as before.
    const plain = await q(CREATE, { input: { environmentId: gid('Environment', live.id), includes: ['DB'] } }, writer);
    expect(plain.createSnapshot.snapshot.copies.map((c: Json) => rowId(c.destination.id))).toEqual([live.destinationId]);
    expect((await follow(app, writer, plain.createSnapshot.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
  }, 120_000);
});

describe('the operator lock', () => {
  const LOCK = `mutation($input: LockEnvironmentInput!) { lockEnvironment(input: $input) { __typename ... on Error { code message } ... on EnvironmentPayload { environment { lock { lockedBy lockedAt reason } } } } }`;
  const UNLOCK = `mutation($input: UnlockEnvironmentInput!) { unlockEnvironment(input: $input) { __typename ... on Error { code message } ... on EnvironmentPayload { environment { lock { reason } } } } }`;
  const RESTORE = `mutation($input: RestoreSnapshotInput!) { restoreSnapshot(input: $input) { __typename ... on Error { code message } ... on RestorePayload { operation { id } } } }`;

  it('refuses restores with ENVIRONMENT_LOCKED naming who and why, lets snapshots run, and lifts with unlock', async () => {
    const { db } = app.runtime;
    const ready = await takeSnapshot(app, writer, live.id, { includes: ['DB'] });
    const env = gid('Environment', live.id);
    const locked = await q(LOCK, { input: { environmentId: env, reason: 'app running: stop it before restoring' } }, writer);
    expect(locked.lockEnvironment.environment.lock).toMatchObject({ lockedBy: 'API key "deploy bot"', reason: 'app running: stop it before restoring' });
    expect(Date.parse(locked.lockEnvironment.environment.lock.lockedAt)).toBeGreaterThan(0);
    const shown = await q(`query($id: ID!) { environment(id: $id) { lock { lockedBy reason } } }`, { id: env }, admin);
    expect(shown.environment.lock).toEqual({ lockedBy: 'API key "deploy bot"', reason: 'app running: stop it before restoring' });

    const restores = await db.operation.count({ where: { environmentId: live.id, type: 'RESTORE' } });
    const refused = await q(RESTORE, { input: { snapshotId: ready.snapshotId, createSafetySnapshot: false } }, admin);
    expect(refused.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'ENVIRONMENT_LOCKED' });
    expect(refused.restoreSnapshot.message).toContain('deploy bot');
    expect(refused.restoreSnapshot.message).toContain('app running: stop it before restoring');
    expect(await db.operation.count({ where: { environmentId: live.id, type: 'RESTORE' } })).toBe(restores);
    expect(await db.restoreLog.count({ where: { targetEnvironmentId: live.id } })).toBe(0);

    // Locked against restores, not against snapshots.
    await takeSnapshot(app, writer, live.id, { includes: ['DB'] });
    // A second lock would hide the first one's reason: refused.
    const again = await q(LOCK, { input: { environmentId: env, reason: 'mine now' } }, admin);
    expect(again.lockEnvironment).toMatchObject({ __typename: 'ConflictError', code: 'ENVIRONMENT_LOCKED' });
    const blank = await q(LOCK, { input: { environmentId: env, reason: '  ' } }, admin);
    expect(blank.lockEnvironment).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });

    const unlocked = await q(UNLOCK, { input: { environmentId: env } }, writer);
    expect(unlocked.unlockEnvironment.environment.lock).toBeNull();
    const accepted = await q(RESTORE, { input: { snapshotId: ready.snapshotId, createSafetySnapshot: false } }, admin);
    expect(accepted.restoreSnapshot.__typename).toBe('RestorePayload');
    expect((await follow(app, admin, accepted.restoreSnapshot.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
  }, 180_000);
});

describe('snapshot list by content', () => {
  it('environment.snapshots(filter: { includes }) lists database-only, files-only or database-and-files snapshots, whatever order includes was stored in', async () => {
    const { db } = app.runtime;
    const project = await makeProject(db, orgId);
    const env = await makeEnvironment(db, app.runtime.deps.secrets, project);
    const make = (label: string, includes: ('DB' | 'FILES')[]) =>
      db.snapshot.create({ data: { organizationId: orgId, projectId: project.id, environmentId: env.id, status: 'READY', includes, label } });
    await make('db', ['DB']);
    await make('files', ['FILES']);
    await make('both', ['DB', 'FILES']);
    await make('both-reversed', ['FILES', 'DB']);
    const list = async (includes: string | null) => {
      const res = await q(`query($id: ID!, $f: SnapshotFilter) { environment(id: $id) { snapshots(first: 10, filter: $f) { totalCount edges { node { label } } } } }`, { id: gid('Environment', env.id), f: includes ? { includes } : null }, admin);
      return { total: res.environment.snapshots.totalCount, labels: res.environment.snapshots.edges.map((e: Json) => e.node.label).sort() };
    };
    expect(await list('DATABASE_ONLY')).toEqual({ total: 1, labels: ['db'] });
    expect(await list('FILES_ONLY')).toEqual({ total: 1, labels: ['files'] });
    expect(await list('DATABASE_AND_FILES')).toEqual({ total: 2, labels: ['both', 'both-reversed'] });
    expect(await list(null)).toEqual({ total: 4, labels: ['both', 'both-reversed', 'db', 'files'] });

    // The client command line's `snapshot list --includes`, against the same server.
    const cli = async (...args: string[]) => {
      let out = '';
      let err = '';
      const io = { stdout: Object.assign(new PassThrough(), { isTTY: false }), stderr: new PassThrough(), env: { BACKPLANE_URL: app.url, BACKPLANE_TOKEN: admin } };
      io.stdout.on('data', (c) => (out += c));
      io.stderr.on('data', (c) => (err += c));
      const code = await clientMain(['snapshot', 'list', '--env', `${project.name}/${env.name}`, ...args], io);
      return { code, out, err };
    };
    const files = await cli('--includes', 'files_only', '--json');
    expect(files.code).toBe(0);
    expect((JSON.parse(files.out) as { label: string }[]).map((s) => s.label)).toEqual(['files']);
    const table = await cli('--includes', 'DATABASE_AND_FILES');
    expect(table.out.split('\n').filter((l) => l.startsWith('U25')).length).toBe(2);
    const wrong = await cli('--includes', 'everything');
    expect(wrong).toMatchObject({ code: 2 });
    expect(wrong.err).toContain('expected one of DATABASE_ONLY, FILES_ONLY, DATABASE_AND_FILES');
  });
});

describe('environment by project and name, environments by type', () => {
  const BY_NAME = `query($project: String, $name: String, $id: ID) { environment(project: $project, name: $name, id: $id) { id name project { name } } }`;

  it('finds an environment by project name or project id and its name; null when not visible; a wrong mix of arguments is a VALIDATION_FAILED error', async () => {
    const { db, deps } = app.runtime;
    const shop = await makeProject(db, orgId, { name: 'shop' });
    const blog = await makeProject(db, orgId, { name: 'blog' });
    const typed = async (p: typeof shop, name: string, type: 'PRODUCTION' | 'STAGING' | 'PREVIEW') =>
      db.environment.update({ where: { id: (await makeEnvironment(db, deps.secrets, p, { name })).id }, data: { type } });
    const prod = await typed(shop, 'production', 'PRODUCTION');
    await typed(blog, 'production', 'PRODUCTION');
    await typed(shop, 'staging', 'STAGING');
    await typed(shop, 'pr-12', 'PREVIEW');

    const byName = await q(BY_NAME, { project: 'shop', name: 'production' }, admin);
    expect(byName.environment).toEqual({ id: gid('Environment', prod.id), name: 'production', project: { name: 'shop' } });
    const byProjectId = await q(BY_NAME, { project: gid('Project', shop.id), name: 'production' }, admin);
    expect(byProjectId.environment.id).toBe(gid('Environment', prod.id));
    expect((await q(BY_NAME, { project: 'shop', name: 'nope' }, admin)).environment).toBeNull();
    // A key limited to the blog project does not see the shop's environment.
    const blogKey = (await makeApiKey(db, orgId, { scopes: ['backups:read'], projectIds: [blog.id] })).secret;
    expect((await q(BY_NAME, { project: 'shop', name: 'production' }, blogKey)).environment).toBeNull();
    expect((await q(BY_NAME, { project: 'blog', name: 'production' }, blogKey)).environment.project).toEqual({ name: 'blog' });

    const missingName = await q(BY_NAME, { project: 'shop' }, admin);
    expect(missingName.errors[0].extensions).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: ['name'] }] });
    const both = await q(BY_NAME, { project: 'shop', name: 'production', id: gid('Environment', prod.id) }, admin);
    expect(both.errors[0].extensions).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: ['id'] }] });
    const none = await q(BY_NAME, {}, admin);
    expect(none.errors[0].extensions).toMatchObject({ code: 'VALIDATION_FAILED' });

    const ofTypes = await q(
      `query($id: ID!) { project(id: $id) { environments(first: 10, types: [PRODUCTION, PREVIEW]) { totalCount edges { node { name type } } } } }`,
      { id: gid('Project', shop.id) },
      admin,
    );
    expect(ofTypes.project.environments.totalCount).toBe(2);
    expect(ofTypes.project.environments.edges.map((e: Json) => e.node.name).sort()).toEqual(['pr-12', 'production']);
    const rootList = await q(`query($p: ID) { environments(first: 10, projectId: $p, types: [STAGING]) { totalCount edges { node { name } } } }`, { p: gid('Project', shop.id) }, admin);
    expect(rootList.environments).toEqual({ totalCount: 1, edges: [{ node: { name: 'staging' } }] });
  });
});

describe('schedules: files only, and all of a project in one list', () => {
  const UPSERT = `mutation($input: UpsertScheduleInput!) { upsertSchedule(input: $input) { __typename ... on Error { code message } ... on ValidationError { fields { path message } }
    ... on SchedulePayload { schedule { id filesCron nextFilesRunAt filesRetention { last dailyWithinDays } } } } }`;

  it('a files-only schedule plans its own runs and takes snapshots of the files alone', async () => {
    const res = await q(UPSERT, { input: { environmentId: gid('Environment', live.id), filesCron: '0 4 * * *', filesRetention: { last: 3, dailyWithinDays: 7 } } }, writer);
    expect(res.upsertSchedule.schedule).toMatchObject({ filesCron: '0 4 * * *', filesRetention: { last: 3, dailyWithinDays: 7 } });
    expect(new Date(res.upsertSchedule.schedule.nextFilesRunAt).getUTCHours()).toBe(4);
    const scheduleId = rowId(res.upsertSchedule.schedule.id);
    expect((await jobsWithKey(app, `schedule:${scheduleId}:files`)).map((j) => j.task)).toEqual(['schedule_fire']);

    // The planned run, made due now: a SCHEDULED snapshot of the files only.
    const before = new Set((await app.runtime.db.snapshot.findMany({ where: { environmentId: live.id }, select: { id: true } })).map((s) => s.id));
    await app.runtime.db.schedule.update({ where: { id: scheduleId }, data: { nextFilesRunAt: new Date(Date.now() - 1000) } });
    await runJobNow(app, `schedule:${scheduleId}:files`);
    const taken = await waitFor(
      () => app.runtime.db.snapshot.findMany({ where: { environmentId: live.id, kind: 'SCHEDULED' } }),
      (rows) => rows.some((s) => !before.has(s.id) && s.status === 'READY'),
      'the scheduled files snapshot',
      120_000,
    );
    const snap = taken.find((s) => !before.has(s.id))!;
    expect(snap.includes).toEqual(['FILES']);
    const listed = await restic(live.repositoryPath, await repositoryPassword(app, live.destinationId), 'ls', '--json', (await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: snap.id } })).repoSnapshotId!);
    const paths = listed.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { path?: string }).map((n) => n.path).filter(Boolean) as string[];
    expect(paths.some((p) => p.startsWith('/files/'))).toBe(true);
    expect(paths.some((p) => p.startsWith('/db'))).toBe(false);

    // Without a files path there is nothing to back up.
    const { db, deps } = app.runtime;
    const bare = await makeEnvironment(db, deps.secrets, await makeProject(db, orgId), { filesPath: null });
    await db.environmentDestination.create({ data: { environmentId: bare.id, destinationId: live.destinationId } });
    const refused = await q(UPSERT, { input: { environmentId: gid('Environment', bare.id), filesCron: '0 4 * * *' } }, writer);
    expect(refused.upsertSchedule).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'filesCron'] }] });
    expect(await db.schedule.count({ where: { environmentId: bare.id } })).toBe(0);
  }, 180_000);

  it('project.schedules lists the schedules of every environment of the project, and only those', async () => {
    const { db, deps } = app.runtime;
    const project = await makeProject(db, orgId);
    const other = await makeProject(db, orgId);
    const ids: string[] = [];
    for (const [p, name] of [[project, 'a'], [project, 'b'], [other, 'c']] as const) {
      const env = await makeEnvironment(db, deps.secrets, p, { name });
      await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: live.destinationId } });
      const res = await q(UPSERT, { input: { environmentId: gid('Environment', env.id), dbCron: '0 1 * * *' } }, admin);
      ids.push(res.upsertSchedule.schedule.id);
    }
    await makeEnvironment(db, deps.secrets, project, { name: 'unscheduled' });
    const res = await q(`query($id: ID!) { project(id: $id) { schedules(first: 10) { totalCount edges { node { id environment { name } } } } } }`, { id: gid('Project', project.id) }, writer);
    expect(res.project.schedules.totalCount).toBe(2);
    expect(res.project.schedules.edges.map((e: Json) => e.node.environment.name)).toEqual(['a', 'b']);
    expect(res.project.schedules.edges.map((e: Json) => e.node.id)).toEqual(ids.slice(0, 2));
  });
});

describe('retention: last N and age windows per tier, previewed exactly as applied', () => {
  it('keeps the last N and the newest of each day and week inside their windows; the sweep deletes exactly what the preview said', async () => {
    const { db, deps } = app.runtime;
    useManualClock(app, '2034-03-15T12:00:00Z'); // a Wednesday
    try {
      const project = await makeProject(db, orgId);
      const env = await makeEnvironment(db, deps.secrets, project);
      const dest = await db.destination.create({ data: { organizationId: orgId, name: 'catalog only (retention)', provider: 'LOCAL', config: { path: '/nonexistent/never-opened' } } });
      await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: dest.id } });
      const res = await q(
        `mutation($input: UpsertScheduleInput!) { upsertSchedule(input: $input) { __typename } }`,
        { input: { environmentId: gid('Environment', env.id), dbCron: '0 */6 * * *', dbRetention: { last: 2, dailyWithinDays: 3, weeklyWithinWeeks: 3 } } },
        admin,
      );
      expect(res.upsertSchedule.__typename).toBe('SchedulePayload');
      // Two a day, at 06:00 and 18:00 UTC, for 30 days back from 2034-03-15 06:00.
      for (let i = 0; i < 60; i++) {
        const at = new Date(Date.parse('2034-03-15T06:00:00Z') - i * 12 * 3_600_000);
        await db.snapshot.create({
          data: { organizationId: orgId, projectId: project.id, environmentId: env.id, kind: 'SCHEDULED', includes: ['DB'], status: 'READY', label: at.toISOString().slice(0, 13), createdAt: at, completedAt: at, copies: { create: [{ destinationId: dest.id, status: 'READY' }] } },
        });
      }
      const preview = await q(
        `query($id: ID!) { previewRetention(environmentId: $id) { __typename ... on RetentionPreview { keep { rule snapshot { id label } } delete { snapshot { id } } } } }`,
        { id: gid('Environment', env.id) },
        admin,
      );
      const kept = Object.fromEntries(preview.previewRetention.keep.map((d: Json) => [d.snapshot.label, d.rule]));
      // The last 2 (15th 06:00, 14th 18:00); then the newest of each day whose newest lies within
      // 3 days (from the 12th 12:00: the 13th and the 12th; the 15th and 14th are already kept);
      // then of each ISO week within 3 weeks (from 22 Feb 12:00): Sundays 5 March and 26 February
      // (this week's newest and last week's, the 12th, are kept already).
      expect(kept).toEqual({
        '2034-03-15T06': 'LAST',
        '2034-03-14T18': 'LAST',
        '2034-03-13T18': 'DAILY',
        '2034-03-12T18': 'DAILY',
        '2034-03-05T18': 'WEEKLY',
        '2034-02-26T18': 'WEEKLY',
      });
      const expected = preview.previewRetention.delete.map((d: Json) => rowId(d.snapshot.id)).sort();
      expect(expected).toHaveLength(54);
      await runJobNow(app, 'retention:sweep');
      const deleted = await waitFor(
        () => db.snapshot.findMany({ where: { environmentId: env.id, status: 'DELETED' }, select: { id: true } }),
        (rows) => rows.length >= expected.length,
        'the retention deletions',
        120_000,
      );
      expect(deleted.map((r) => r.id).sort()).toEqual(expected);
      expect(await db.snapshot.count({ where: { environmentId: env.id, status: 'READY' } })).toBe(6);
    } finally {
      app.runtime.deps.clock = { now: () => new Date() };
    }
  }, 180_000);
});

describe('expiry of manual snapshots', () => {
  it("a manual snapshot expires after the environment's retentionDays, shown on it; pinned, it shows none and is kept; the sweep deletes the expired one", async () => {
    const { db } = app.runtime;
    const clock = useManualClock(app, new Date());
    try {
      const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 10 });
      const settings = await q(`mutation($input: UpdateEnvironmentSettingsInput!) { updateEnvironmentSettings(input: $input) { __typename } }`, { input: { environmentId: gid('Environment', env.id), retentionDays: 3 } }, admin);
      expect(settings.updateEnvironmentSettings.__typename).toBe('EnvironmentSettingsPayload');
      const t0 = clock.now().getTime();
      const take = async (label: string, kind = 'MANUAL') => {
        const res = await q(CREATE, { input: { environmentId: gid('Environment', env.id), includes: ['DB'], label, kind } }, writer);
        expect((await follow(app, writer, res.createSnapshot.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
        return { id: res.createSnapshot.snapshot.id as string, expiresAt: res.createSnapshot.snapshot.expiresAt as string | null };
      };
      const pinned = await take('pinned');
      const doomed = await take('doomed', 'PRE_DEPLOY');
      const newest = await take('newest');
      for (const s of [pinned, doomed, newest]) expect(Date.parse(s.expiresAt!)).toBe(t0 + 3 * 86_400_000);

      const PIN = `mutation($input: PinSnapshotInput!) { pinSnapshot(input: $input) { __typename ... on SnapshotPayload { snapshot { expiresAt pinned } } } }`;
      expect((await q(PIN, { input: { id: pinned.id } }, writer)).pinSnapshot.snapshot).toEqual({ expiresAt: null, pinned: true });

      // A new retentionDays moves the expiry of the snapshots already taken.
      await q(`mutation($input: UpdateEnvironmentSettingsInput!) { updateEnvironmentSettings(input: $input) { __typename } }`, { input: { environmentId: gid('Environment', env.id), retentionDays: 2 } }, admin);
      const read = async (id: string) => (await q(`query($id: ID!) { node(id: $id) { ... on Snapshot { expiresAt status } } }`, { id }, writer)).node;
      const created = (await db.snapshot.findUniqueOrThrow({ where: { id: rowId(doomed.id) } })).createdAt.getTime();
      expect(Date.parse((await read(doomed.id)).expiresAt)).toBe(created + 2 * 86_400_000);

      clock.set(new Date(Date.now() + 4 * 86_400_000));
      const preview = await q(`query($id: ID!) { previewRetention(environmentId: $id) { ... on RetentionPreview { keep { rule snapshot { id } } delete { rule snapshot { id } } } } }`, { id: gid('Environment', env.id) }, writer);
      const rules = Object.fromEntries([...preview.previewRetention.keep, ...preview.previewRetention.delete].map((d: Json) => [d.snapshot.id, d.rule]));
      expect(rules).toEqual({ [pinned.id]: 'PINNED', [doomed.id]: 'OLDER_THAN_AGE_LIMIT', [newest.id]: 'NEWEST' });
      await runJobNow(app, 'retention:sweep');
      await waitFor(() => read(doomed.id), (s) => s.status === 'DELETED', 'the expired snapshot to be deleted', 120_000);
      expect((await read(pinned.id)).status).toBe('READY');
      expect((await read(newest.id)).status).toBe('READY');
    } finally {
      app.runtime.deps.clock = { now: () => new Date() };
    }
  }, 240_000);
});
