import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ensureDemo } from '../../src/app/bootstrap.ts';
import { redactUrl } from '../../src/app/secrets.ts';
import { startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';
import { walSourceProblems, type WalSourceFacts } from '../../src/sources/wal.ts';
import { UpsertScheduleDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { adminUrl, databaseUrl } from '../harness/database.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
let minimal: ScratchPostgres;

beforeAll(async () => {
  app = await startTestApp();
  const org = await makeOrganization(app.runtime.db);
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'] })).secret;
  env = await makeLiveEnvironment(app, { organizationId: org.id, rows: 10 });
  // A server that cannot stream WAL at all: wal_level = minimal needs max_wal_senders = 0.
  minimal = await startScratchPostgres({ settings: { wal_level: 'minimal', max_wal_senders: 0 } });
}, 120_000);
afterAll(async () => {
  await app?.stop();
  await minimal?.stop();
});

async function pointEnvironmentAt(url: string) {
  await app.runtime.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: app.runtime.deps.secrets.seal(url), databaseUrlRedacted: redactUrl(url) } });
}

async function enable(extra: Record<string, unknown> = {}) {
  const res = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', env.id), dbCron: '0 1 * * *', walEnabled: true, ...extra } as never }, { key });
  expect(res.errors).toBeUndefined();
  return res.data!.upsertSchedule as { __typename: string; code?: string; message?: string };
}

const envRow = () => app.runtime.db.environment.findUniqueOrThrow({ where: { id: env.id } });

describe('enabling point-in-time recovery', () => {
  it('refuses a server with wal_level minimal and no WAL senders, naming both settings, and changes nothing', async () => {
    await pointEnvironmentAt(minimal.url('postgres'));
    const r = await enable();
    expect(r.__typename).toBe('ConflictError');
    expect(r.code).toBe('PITR_SOURCE_UNSUITABLE');
    expect(r.message).toContain('wal_level is minimal: set wal_level = replica (or logical)');
    expect(r.message).toContain('max_wal_senders is 0');
    expect((await envRow()).walEnabled).toBe(false);
    expect(await app.runtime.db.schedule.count({ where: { environmentId: env.id } })).toBe(0);
    expect(await app.runtime.db.pitrCluster.count()).toBe(0);
  });

  it('refuses a role without the REPLICATION privilege, saying which ALTER ROLE fixes it', async () => {
    const role = `norepl_${process.pid}`;
    await sql(adminUrl(), `CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    const u = new URL(databaseUrl('postgres'));
    u.username = role;
    u.password = 'pw';
    await pointEnvironmentAt(u.toString());
    const r = await enable();
    expect(r.code).toBe('PITR_SOURCE_UNSUITABLE');
    expect(r.message).toContain(`role ${role} may not replicate: ALTER ROLE ${role} WITH REPLICATION`);
    expect((await envRow()).walEnabled).toBe(false);
  });

  it('refuses a server newer (or older) than the local binaries', () => {
    const facts: WalSourceFacts = {
      systemIdentifier: '1', timeline: 1, walLevel: 'replica', maxWalSenders: 10, role: 'app', canReplicate: true,
      serverVersion: '17.2', serverMajor: 17, walSegmentSize: 16 << 20, extraTablespaces: [], replicationConnectError: null,
    };
    expect(walSourceProblems(facts, 15)).toEqual([expect.stringContaining('PostgreSQL 17.2, newer than the local PostgreSQL 15 binaries')]);
    expect(walSourceProblems({ ...facts, serverVersion: '14.9', serverMajor: 14 }, 15)[0]).toContain('cannot replay its WAL');
    expect(walSourceProblems({ ...facts, serverMajor: 15 }, 15)).toEqual([]);
  });

  it('refuses a cluster with other tablespaces (base.tar holds only the default one)', () => {
    const facts: WalSourceFacts = {
      systemIdentifier: '1', timeline: 1, walLevel: 'replica', maxWalSenders: 10, role: 'app', canReplicate: true,
      serverVersion: '15.2', serverMajor: 15, walSegmentSize: 16 << 20, extraTablespaces: ['fast'], replicationConnectError: null,
    };
    expect(walSourceProblems(facts, 15)[0]).toContain('tablespaces besides pg_default (fast)');
  });

  it('enables a suitable server: the environment shows the settings and is tied to its cluster by system identifier', async () => {
    await pointEnvironmentAt(env.databaseUrl);
    const r = await enable({ walRetentionDays: 7, walArchiveIntervalSeconds: 30 });
    expect(r.__typename).toBe('SchedulePayload');
    const row = await envRow();
    expect(row).toMatchObject({ walEnabled: true, walRetentionDays: 7, walArchiveIntervalSeconds: 30, baseBackupCron: '0 3 * * *' });
    const sysid = (await sql(adminUrl(), 'SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0].id as string;
    const cluster = await app.runtime.db.pitrCluster.findUniqueOrThrow({ where: { id: row.pitrClusterId! } });
    expect(cluster.systemIdentifier).toBe(sysid);
    expect(cluster.slotName).toBe(`backplane_${cluster.id.replace(/-/g, '')}`);
  });

  it('refuses a bad retention or interval before looking at the server', async () => {
    const r = await enable({ walArchiveIntervalSeconds: 1 });
    expect(r.__typename).toBe('ValidationError');
    expect(r.message).toContain('walArchiveIntervalSeconds: must be at least 5');
  });

  it("the embedded default's demo environment has PITR on out of the box", async () => {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-demo-'));
    try {
      const demo = await ensureDemo(app.runtime.deps, { home, databaseUrlFor: (db) => databaseUrl(db), demoDatabase: `demo_pitr_${process.pid}` });
      const row = await app.runtime.db.environment.findUniqueOrThrow({ where: { id: demo.environmentId } });
      expect(row.walEnabled).toBe(true);
      expect(row.pitrClusterId).not.toBeNull();
    } finally {
      await fs.rm(home, { recursive: true, force: true });
    }
  }, 60_000);
});
