/**
 * An import whose worker is killed (SIGKILL: no chance to clean up) while psql loads the dump
 * leaves nothing behind once the recovery has run: not the `__bp_restore_` database it was
 * filling, not the uploaded dump under BACKPLANE_HOME/imports, not a half-made IMPORT snapshot;
 * the environment is byte for byte as before. The recovery is the killed restore's (the import
 * is a RestoreLog), found by the next worker's start-up sweep after the heartbeat is aged.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { uploadRequest } from '../../src/cli/client/upload.ts';
import { ImportDumpDocument } from '../generated/graphql.ts';
import { startTestApp, testEnv, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { childrenOf, processGroup, until } from '../harness/process.ts';
import { follow } from '../harness/snapshot-helpers.ts';

const exec = promisify(execFile);
const secretKey = randomBytes(32).toString('hex');
let app: TestApp;
let key: string;
let env: LiveEnvironment;
let home: string;
const workers = processGroup();

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-import-crash-'));
  app = await startTestApp({ secretKey, env: { BACKPLANE_HOME: home } });
  const org = await makeOrganization(app.runtime.db);
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'] })).secret;
  env = await makeLiveEnvironment(app, { organizationId: org.id, name: 'crash' });
}, 180_000);
afterAll(async () => {
  await workers.stopAll();
  await app?.stop();
});

function worker() {
  return workers.start(testEnv(app.databaseUrl, secretKey, { BACKPLANE_HOME: home, OPERATION_HEARTBEAT_MS: '500' }), 'worker');
}

const pgDumpText = async (url: string) => (await exec('pg_dump', ['--no-owner', '--dbname', url], { maxBuffer: 64 << 20 })).stdout.replace(/^\\(un)?restrict \S+$/gm, '');
const tempDbs = () => sql(env.databaseUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_restore\\_%'").then((q) => q.rows.map((r) => String(r.datname)));

it('a worker killed while psql loads the dump: the recovery removes the temp database, the dump and the IMPORT snapshot; the environment is as before', { timeout: 300_000 }, async () => {
  const before = await pgDumpText(env.databaseUrl);
  // SQL that holds psql in the temp database long enough to be killed there.
  const dump = path.join(home, '..', `${path.basename(home)}.sql`);
  await fs.writeFile(dump, 'CREATE TABLE half_loaded (x int);\nINSERT INTO half_loaded VALUES (1);\nSELECT pg_sleep(600);\n');
  const doomed = await worker();
  const r = await uploadRequest({ url: app.url, token: key, doc: ImportDumpDocument, variables: { input: { environmentId: gid('Environment', env.id), file: null } }, filePath: 'input.file', file: dump });
  if (r.importDump.__typename !== 'ImportDumpPayload') throw new Error(JSON.stringify(r));
  const opGid = r.importDump.operation.id;
  const opId = Buffer.from(opGid, 'base64').toString().split(':')[1]!;
  await follow(app, key, opGid, (s) => s.phase === 'loading');
  const [psql] = await until(() => childrenOf(doomed.child.pid!, 'psql'), (pids) => pids.length > 0, 'psql to start', 60_000);
  await until(tempDbs, (names) => names.length === 1, 'the temp database', 60_000);
  doomed.child.kill('SIGKILL');
  await new Promise((res) => doomed.child.once('exit', res));
  process.kill(psql, 'SIGKILL');

  // What the killed worker left: the proof the recovery has something to clear.
  expect(await tempDbs()).toHaveLength(1);
  expect(await fs.readdir(path.join(home, 'imports'))).toHaveLength(1);
  const snapshotId = (await app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } })).snapshotId!;

  await app.runtime.db.operation.update({ where: { id: opId }, data: { heartbeatAt: new Date(Date.now() - 3_600_000) } });
  await worker();
  const end = (await follow(app, key, opGid)).at(-1);
  expect(end?.status).toBe('FAILED');
  expect(end?.error).toMatch(/phase loading/);
  expect(await tempDbs()).toEqual([]);
  expect(await fs.readdir(path.join(home, 'imports'))).toEqual([]);
  expect(await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } })).toMatchObject({ kind: 'IMPORT', status: 'FAILED' });
  expect(await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } })).toMatchObject({ status: 'FAILED' });
  const alert = await app.runtime.db.alert.findFirst({ where: { operationId: opId, type: 'RESTORE_FAILED' } });
  expect(alert?.message).toMatch(/^Import into crash failed: .*phase loading.*temp database/);
  expect(await pgDumpText(env.databaseUrl)).toBe(before);
  await fs.rm(dump, { force: true });
});
