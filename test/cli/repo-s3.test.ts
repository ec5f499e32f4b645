/**
 * `backplane repo` against an S3-compatible server (s3rver over HTTPS with its own CA, given by
 * --cacert), with restic reading the same bucket.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, seededBytes, tempDir } from '../engine/helpers.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { ok, PASSWORD, repoCli } from './helpers.ts';
import { requireTool } from '../harness/prerequisites.ts';

const run = promisify(execFile);
await requireTool('restic', ['version'], 'apt-get install restic');

describe('backplane repo on S3', () => {
  let s3: StartedS3rver;
  let caFile: string;
  let location: string;
  const env = () => ({
    BACKPLANE_REPO: location,
    BACKPLANE_REPO_PASSWORD: PASSWORD,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  });
  const data = Buffer.concat([seededBytes('s3-cli', 2_000_000), Buffer.from('some text\n'.repeat(50_000))]);

  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['cli'], tls: true });
    caFile = join(await tempDir('bp-cli-s3-'), 'ca.pem');
    await writeFile(caFile, s3.ca!);
    location = `s3:${s3.endpoint}/cli/team/repo`;
  });
  afterAll(async () => {
    await s3?.stop();
    await cleanupTempDirs();
  });

  it('init, backup from stdin, snapshots and dump through S3', async () => {
    ok(await repoCli(['init', '--cacert', caFile], { env: env() }));
    const b = ok(await repoCli(['backup', '--cacert', caFile, '--stdin-filename', 'db/app.dump', '--json'], { env: env(), input: data })).json();
    const list = ok(await repoCli(['snapshots', '--cacert', caFile, '--json'], { env: env() })).json<{ id: string }[]>();
    expect(list.map((s) => s.id)).toEqual([b.snapshotId]);
    const dumped = ok(await repoCli(['dump', '--cacert', caFile, 'latest', '/db/app.dump'], { env: env() }));
    expect(dumped.stdout.equals(data)).toBe(true);
    ok(await repoCli(['check', '--read-data', '--cacert', caFile], { env: env() }));
  });

  it('restic reads the S3 repository the CLI wrote', async () => {
    const { stdout } = await run('restic', ['-r', location, '--cacert', caFile, '--no-cache', 'snapshots', '--json'], {
      env: { ...process.env, ...env(), RESTIC_PASSWORD: PASSWORD },
    });
    expect((JSON.parse(stdout) as { paths: string[] }[]).map((s) => s.paths)).toEqual([['/db/app.dump']]);
  });

  it('without credentials: a usage error', async () => {
    const r = await repoCli(['snapshots', '--cacert', caFile], { env: { ...env(), AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^backplane: .*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n$/);
  });

  it('with a key the server does not know: exit 1 and one line', async () => {
    const r = await repoCli(['snapshots', '--cacert', caFile], { env: { ...env(), AWS_ACCESS_KEY_ID: 'NOBODY' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^backplane: [^\n]+\n$/);
  });
});
