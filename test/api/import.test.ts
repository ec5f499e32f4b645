/**
 * importDump through the API: every format (plain SQL, custom, tar), raw, gzip and zstd, from
 * each source (a multipart upload, an https URL, a key on a destination); the refusals (wrong
 * format, too large, a URL or key that may not be read) and a broken dump, each leaving the
 * environment byte for byte as it was; and the IMPORT snapshot restoring what was imported.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compress as zstdCompress } from 'zstd-napi';
import { uploadRequest } from '../../src/cli/client/upload.ts';
import { CreateDestinationDocument, ImportDumpDocument, ImportStateDocument, type ImportDumpMutationVariables } from '../generated/graphql.ts';
import { S3RVER_CREDENTIALS, startS3rver } from '../harness/s3rver.ts';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { createScratchDatabase } from '../harness/database.ts';
import { gid, makeApiKey, makeOrganization, makeProject } from '../harness/factories.ts';
import { databaseDigest, makeLiveEnvironment, seedDatabase, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, startRestore } from '../harness/snapshot-helpers.ts';

const exec = promisify(execFile);

let app: TestApp;
let key: string;
let orgId: string;
let env: LiveEnvironment;
let home: string;
let work: string;
let sourceUrl: string;
let sourceDigest: Record<string, string>;
const dumps: Record<string, Buffer> = {};
const MAX_BYTES = 8 * 1024 * 1024;

/** Everything pg_dump sees in a database, as plain SQL: the byte-for-byte witness of "unchanged". */
async function pgDumpText(url: string): Promise<string> {
  const { stdout } = await exec('pg_dump', ['--no-owner', '--format=plain', '--dbname', url], { maxBuffer: 256 << 20 });
  // pg_dump 15.14+ writes a random \restrict key into each plain dump.
  return stdout.replace(/^\\(un)?restrict \S+$/gm, '');
}

async function pgDump(url: string, format: 'custom' | 'tar' | 'plain'): Promise<Buffer> {
  const { stdout } = await exec('pg_dump', [`--format=${format}`, '--no-owner', '--dbname', url], { encoding: 'buffer', maxBuffer: 256 << 20 });
  return stdout as unknown as Buffer;
}

async function importFiles(): Promise<string[]> {
  return fs.readdir(path.join(home, 'imports')).catch(() => []);
}

async function leftoverDatabases(): Promise<string[]> {
  const r = await sql(env.databaseUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_restore\\_%'");
  return r.rows.map((row: { datname: string }) => row.datname);
}

async function upload(file: string, input: Partial<ImportDumpMutationVariables['input']> = {}, token = key) {
  const r = await uploadRequest({
    url: app.url,
    token,
    doc: ImportDumpDocument,
    variables: { input: { environmentId: gid('Environment', env.id), file: null, createSafetySnapshot: false, ...input } },
    filePath: 'input.file',
    file,
  });
  return r.importDump;
}

async function request(input: Partial<ImportDumpMutationVariables['input']>) {
  const res = await app.gql(ImportDumpDocument, { input: { environmentId: gid('Environment', env.id), createSafetySnapshot: false, ...input } }, { key });
  if (!res.data) throw new Error(JSON.stringify(res.errors));
  return res.data.importDump;
}

/** Follows a started import to its end; returns the operation and log as the API shows them. */
async function finish(started: Awaited<ReturnType<typeof request>>) {
  if (started.__typename !== 'ImportDumpPayload') throw new Error(JSON.stringify(started));
  await follow(app, key, started.operation.id);
  const state = await app.gql(ImportStateDocument, { operationId: started.operation.id, logId: started.restoreLog.id }, { key });
  return { op: state.data!.operation!, log: state.data!.node as { status: string; safetySnapshot: { id: string; kind: string; status: string } | null } };
}

async function writeDump(name: string, bytes: Buffer): Promise<string> {
  const file = path.join(work, name);
  await fs.writeFile(file, bytes);
  return file;
}

/** Makes the environment differ from the source, so that an import has something to change. */
async function diverge() {
  await sql(env.databaseUrl, "UPDATE customers SET name = 'before import ' || id WHERE id <= 20");
  expect(await databaseDigest(env.databaseUrl)).not.toEqual(sourceDigest);
}

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-import-home-'));
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-import-work-'));
  // A self-signed certificate for the local https server, trusted through IMPORT_CA_FILE.
  await exec('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '1', '-keyout', path.join(work, 'key.pem'), '-out', path.join(work, 'cert.pem')]);
  app = await startTestApp({
    env: { BACKPLANE_HOME: home, IMPORT_MAX_BYTES: String(MAX_BYTES), IMPORT_ALLOW_PRIVATE_URLS: 'true', IMPORT_CA_FILE: path.join(work, 'cert.pem') },
  });
  await app.startWorker();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'] })).secret;
  env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'target', rows: 300 });
  // The source: the same tables with other rows, and one table the target lacks.
  sourceUrl = await createScratchDatabase('import-src');
  await seedDatabase(sourceUrl, 120);
  await sql(sourceUrl, "CREATE TABLE imported_marker (note text); INSERT INTO imported_marker VALUES ('from the dump'); UPDATE customers SET note = 'imported' WHERE id % 7 = 0");
  sourceDigest = await databaseDigest(sourceUrl);
  for (const format of ['plain', 'custom', 'tar'] as const) dumps[format] = await pgDump(sourceUrl, format);
}, 180_000);
afterAll(() => app?.stop());

describe('importDump from an upload', { timeout: 240_000 }, () => {
  const cases = [
    ['plain', 'none'],
    ['plain', 'gzip'],
    ['custom', 'none'],
    ['custom', 'zstd'],
    ['tar', 'none'],
    ['tar', 'gzip'],
    ['plain', 'zstd'],
  ] as const;
  for (const [format, compression] of cases) {
    it(`loads a ${format} dump (${compression}), told by its content, and leaves an IMPORT snapshot`, async () => {
      await diverge();
      const raw = dumps[format]!;
      const bytes = compression === 'gzip' ? gzipSync(raw) : compression === 'zstd' ? zstdCompress(raw) : raw;
      // A name that says nothing: the content decides.
      const file = await writeDump(`${format}-${compression}.bin`, bytes);
      const { op } = await finish(await upload(file));
      expect(op, op.error ?? '').toMatchObject({ type: 'IMPORT', status: 'SUCCEEDED', errorCode: null });
      expect(op.snapshot).toMatchObject({ kind: 'IMPORT', status: 'READY', includes: ['DB'] });
      expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);
      expect((await sql(env.databaseUrl, 'SELECT note FROM imported_marker')).rows).toEqual([{ note: 'from the dump' }]);
      expect(await leftoverDatabases()).toEqual([]);
      expect(await importFiles()).toEqual([]);
    });
  }

  it('takes a safety snapshot first, and the IMPORT snapshot restores what was imported', async () => {
    await diverge();
    const before = await databaseDigest(env.databaseUrl);
    const { op, log } = await finish(await upload(await writeDump('again.dump', dumps.custom!), { createSafetySnapshot: true }));
    expect(op, op.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(log.safetySnapshot).toMatchObject({ kind: 'SAFETY', status: 'READY' });

    // The safety snapshot holds the state before the import…
    const back = await startRestore(app, key, { snapshotId: log.safetySnapshot!.id, createSafetySnapshot: false });
    expect((await follow(app, key, back.operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(env.databaseUrl)).toEqual(before);
    // …and the IMPORT snapshot what the dump held.
    const again = await startRestore(app, key, { snapshotId: op.snapshot!.id, createSafetySnapshot: false });
    expect((await follow(app, key, again.operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);
  });

  it('refuses a file that is no dump with IMPORT_FORMAT_UNKNOWN, changing nothing', async () => {
    await diverge();
    const before = await pgDumpText(env.databaseUrl);
    const operations = await app.runtime.db.operation.count();
    for (const bytes of [randomBytes(200_000), gzipSync(randomBytes(50_000)), Buffer.from('\x89PNG\r\n\x1a\n' + '\0'.repeat(100), 'latin1')]) {
      const r = await upload(await writeDump('photo.sql', bytes));
      expect(r).toMatchObject({ __typename: 'ValidationError', code: 'IMPORT_FORMAT_UNKNOWN' });
    }
    expect(await app.runtime.db.operation.count()).toBe(operations);
    expect(await pgDumpText(env.databaseUrl)).toBe(before);
    expect(await importFiles()).toEqual([]);
  });

  it('a broken dump fails with IMPORT_FAILED and leaves the environment byte for byte as it was', async () => {
    await diverge();
    const before = await pgDumpText(env.databaseUrl);
    const cases = [
      // A custom dump cut in half: it starts like one, pg_restore finds the rest missing.
      dumps.custom!.subarray(0, Math.floor(dumps.custom!.length / 2)),
      // Plain SQL that fails half way, after it created a table.
      Buffer.from(dumps.plain!.toString('utf8') + '\nSELECT no_such_function();\n'),
      // A meta-command: refused, never run (it would create a file).
      Buffer.from(`CREATE TABLE t (x int);\n\\! touch ${path.join(work, 'pwned')}\n`),
    ];
    for (const bytes of cases) {
      const { op } = await finish(await upload(await writeDump('broken.bin', bytes)));
      expect(op).toMatchObject({ status: 'FAILED', errorCode: 'IMPORT_FAILED' });
      expect(op.snapshot).toMatchObject({ kind: 'IMPORT', status: 'FAILED' });
      expect(await pgDumpText(env.databaseUrl)).toBe(before);
      expect(await leftoverDatabases()).toEqual([]);
      expect(await importFiles()).toEqual([]);
    }
    await expect(fs.stat(path.join(work, 'pwned'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses an upload over IMPORT_MAX_BYTES with IMPORT_TOO_LARGE, keeping none of it', async () => {
    await diverge();
    const before = await pgDumpText(env.databaseUrl);
    const operations = await app.runtime.db.operation.count();
    // A valid dump, only too large: the size decides, not the content.
    const big = Buffer.concat([dumps.plain!, Buffer.from('-- padding\n'.repeat(Math.ceil((MAX_BYTES + 1024 * 1024) / 11)))]);
    const r = await upload(await writeDump('big.sql', big));
    expect(r).toMatchObject({ __typename: 'ValidationError', code: 'IMPORT_TOO_LARGE' });
    expect(await app.runtime.db.operation.count()).toBe(operations);
    expect(await pgDumpText(env.databaseUrl)).toBe(before);
    expect(await importFiles()).toEqual([]);
    // The 1 MB request limit does not apply to the file: a dump just under the import limit goes through.
    const justUnder = Buffer.concat([dumps.plain!, Buffer.from('-- padding\n'.repeat(Math.floor((MAX_BYTES - dumps.plain!.length - 1024) / 11)))]);
    expect(justUnder.length).toBeGreaterThan(1_000_000);
    const { op } = await finish(await upload(await writeDump('under.sql', justUnder)));
    expect(op, op.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);
  });

  it("takes the README's curl request as written (curl -F, the file last)", async () => {
    await diverge();
    const file = await writeDump('shop.sql.gz', gzipSync(dumps.plain!));
    const operations = JSON.stringify({
      query: 'mutation($input: ImportDumpInput!) { importDump(input: $input) { __typename ... on ImportDumpPayload { operation { id } } ... on Error { code message } } }',
      variables: { input: { environmentId: gid('Environment', env.id), file: null } },
    });
    const { stdout } = await exec('curl', ['-sS', app.url, '-H', `Authorization: Bearer ${key}`, '-F', `operations=${operations}`, '-F', 'map={"0":["variables.input.file"]}', '-F', `0=@${file}`]);
    const answer = JSON.parse(stdout) as { data: { importDump: { __typename: string; operation: { id: string } } } };
    expect(answer.data.importDump.__typename, stdout).toBe('ImportDumpPayload');
    const states = await follow(app, key, answer.data.importDump.operation.id);
    expect(states.at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);
  });

  it('a file variable sent as JSON, not uploaded, is refused', async () => {
    const r = await request({ file: 'upload:0123456789abcdef01234567' });
    expect(r).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
  });
});

describe('importDump from an https URL', { timeout: 240_000 }, () => {
  let server: https.Server;
  let base: string;
  const served: Record<string, Buffer> = {};

  beforeAll(async () => {
    served['/dump.sql.gz'] = gzipSync(dumps.plain!);
    served['/custom.dump'] = dumps.custom!;
    served['/noise.bin'] = randomBytes(100_000);
    server = https.createServer({ key: await fs.readFile(path.join(work, 'key.pem')), cert: await fs.readFile(path.join(work, 'cert.pem')) }, (req, res) => {
      const body = served[req.url ?? ''];
      if (req.url === '/moved') return void res.writeHead(302, { location: '/custom.dump' }).end();
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server?.close(() => r())));

  it('fetches a gzip plain dump, and a custom one through a redirect', async () => {
    for (const p of ['/dump.sql.gz', '/moved']) {
      await diverge();
      const { op } = await finish(await request({ url: `${base}${p}` }));
      expect(op, op.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
      expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);
      expect(await importFiles()).toEqual([]);
    }
  });

  it('refuses http:// at once, and fails a missing or wrong-format URL with a code, changing nothing', async () => {
    await diverge();
    const before = await pgDumpText(env.databaseUrl);
    expect(await request({ url: base.replace('https:', 'http:') + '/custom.dump' })).toMatchObject({ __typename: 'ValidationError', code: 'IMPORT_URL_REFUSED' });
    const missing = await finish(await request({ url: `${base}/nothing` }));
    expect(missing.op).toMatchObject({ status: 'FAILED', errorCode: 'IMPORT_SOURCE_UNREADABLE' });
    const noise = await finish(await request({ url: `${base}/noise.bin` }));
    expect(noise.op).toMatchObject({ status: 'FAILED', errorCode: 'IMPORT_FORMAT_UNKNOWN' });
    expect(await pgDumpText(env.databaseUrl)).toBe(before);
    expect(await importFiles()).toEqual([]);
  });
});

describe('importDump from a key on a destination', { timeout: 240_000 }, () => {
  it('reads a file beside the repository, and refuses keys that leave it or destinations the key cannot see', async () => {
    await fs.mkdir(path.join(env.repositoryPath, 'dumps'), { recursive: true });
    await fs.writeFile(path.join(env.repositoryPath, 'dumps', 'nightly.sql.zst'), zstdCompress(dumps.plain!));
    await diverge();
    const { op } = await finish(await request({ destinationId: gid('Destination', env.destinationId), key: 'dumps/nightly.sql.zst' }));
    expect(op, op.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);

    for (const k of ['../outside.sql', '/etc/passwd', 'dumps/../../x', '']) {
      expect([k, await request({ destinationId: gid('Destination', env.destinationId), key: k })]).toMatchObject([k, { __typename: 'ValidationError', code: 'VALIDATION_FAILED' }]);
    }
    // A symbolic link inside the destination that points out of it.
    await fs.symlink('/etc/hostname', path.join(env.repositoryPath, 'dumps', 'escape.sql'));
    const escaped = await finish(await request({ destinationId: gid('Destination', env.destinationId), key: 'dumps/escape.sql' }));
    expect(escaped.op).toMatchObject({ status: 'FAILED', errorCode: 'IMPORT_SOURCE_UNREADABLE' });

    const other = await makeOrganization(app.runtime.db);
    const theirs = await app.runtime.db.destination.create({ data: { organizationId: other.id, name: 'theirs', provider: 'LOCAL', config: { path: env.repositoryPath } } });
    expect(await request({ destinationId: gid('Destination', theirs.id), key: 'dumps/nightly.sql.zst' })).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
  });
});

describe('importDump from a key on an S3 destination', { timeout: 240_000 }, () => {
  it('reads the object under the destination prefix', async () => {
    const s3 = await startS3rver({ buckets: ['dumps'] });
    try {
      const admin = (await makeApiKey(app.runtime.db, orgId, { scopes: ['admin'] })).secret;
      const created = await app.gql(CreateDestinationDocument, { input: { name: 's3 dumps', provider: 'CUSTOM', endpoint: s3.endpoint, bucket: 'dumps', prefix: 'team', ...S3RVER_CREDENTIALS } }, { key: admin });
      if (created.data?.createDestination.__typename !== 'DestinationPayload') throw new Error(JSON.stringify(created));
      const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
      await client.send(new PutObjectCommand({ Bucket: 'dumps', Key: 'team/nightly/shop.dump', Body: dumps.custom! }));
      client.destroy();
      await diverge();
      const r = await app.gql(ImportDumpDocument, { input: { environmentId: gid('Environment', env.id), destinationId: created.data.createDestination.destination.id, key: 'nightly/shop.dump', createSafetySnapshot: false } }, { key: admin });
      const { op } = await finish(r.data!.importDump);
      expect(op, op.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
      expect(await databaseDigest(env.databaseUrl)).toEqual(sourceDigest);
      const missing = await app.gql(ImportDumpDocument, { input: { environmentId: gid('Environment', env.id), destinationId: created.data.createDestination.destination.id, key: 'nightly/none.dump', createSafetySnapshot: false } }, { key: admin });
      expect((await finish(missing.data!.importDump)).op).toMatchObject({ status: 'FAILED', errorCode: 'IMPORT_SOURCE_UNREADABLE' });
    } finally {
      await s3.stop();
    }
  });
});

describe('importDump: idempotency and keys', { timeout: 240_000 }, () => {
  it('the same idempotencyKey with the same dump answers the same operation; with another dump, IDEMPOTENCY_KEY_REUSED', async () => {
    await diverge();
    const imports = await app.runtime.db.operation.count({ where: { type: 'IMPORT' } });
    const file = await writeDump('idem.dump', dumps.custom!);
    const first = await upload(file, { idempotencyKey: 'import-once' });
    const again = await upload(file, { idempotencyKey: 'import-once' });
    if (first.__typename !== 'ImportDumpPayload' || again.__typename !== 'ImportDumpPayload') throw new Error(JSON.stringify({ first, again }));
    expect(again.operation.id).toBe(first.operation.id);
    expect(await upload(await writeDump('idem.sql', dumps.plain!), { idempotencyKey: 'import-once' })).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    const { op } = await finish(first);
    expect(op, op.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(await app.runtime.db.operation.count({ where: { type: 'IMPORT' } })).toBe(imports + 1);
    // The replayed request's own copy of the file went too.
    expect(await importFiles()).toEqual([]);
  });

  it('a key limited to another project, or without the write scope, cannot import into the environment', async () => {
    const elsewhere = await makeProject(app.runtime.db, orgId, { name: 'elsewhere' });
    const limited = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:write'], projectIds: [elsewhere.id] })).secret;
    const reader = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'] })).secret;
    const file = await writeDump('limited.dump', dumps.custom!);
    expect(await upload(file, {}, limited)).toMatchObject({ __typename: 'NotFoundError', code: 'ENVIRONMENT_NOT_FOUND' });
    await expect(upload(file, {}, reader)).rejects.toThrow(/backups:write/);
    expect(await importFiles()).toEqual([]);
  });
});
