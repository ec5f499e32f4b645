import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KDF_PARAMS } from '../../src/engine/kdf.ts';
import type { TestApp } from '../harness/app.ts';
import { repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { restic, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

// Every other test file writes repositories with the cheap test KDF (BACKPLANE_REPO_KDF=fast).
// This one writes with the defaults a user gets, and has stock restic open the result. The
// worker runs in this process, so removing the variable here reaches the job that creates the key.
let app: TestApp;
let key: string;
let env: LiveEnvironment;
let testKdf: string | undefined;

beforeAll(async () => {
  // The harness sets the variable when it loads: load it first, then take the variable away.
  await import('../harness/app.ts');
  testKdf = process.env.BACKPLANE_REPO_KDF;
  delete process.env.BACKPLANE_REPO_KDF;
  ({ app, key, env } = await startSnapshotSuite());
});
afterAll(async () => {
  await app?.stop();
  if (testKdf !== undefined) process.env.BACKPLANE_REPO_KDF = testKdf;
});

describe('a repository written with the default key derivation', () => {
  it('has a key with the default scrypt parameters, and restic opens, lists and checks it', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    expect(snapshotId).toBeTruthy();
    const keys = await fs.readdir(path.join(env.repositoryPath, 'keys'));
    expect(keys).toHaveLength(1);
    const keyFile = JSON.parse(await fs.readFile(path.join(env.repositoryPath, 'keys', keys[0]), 'utf8')) as { kdf: string; N: number; r: number; p: number };
    expect(keyFile).toMatchObject({ kdf: 'scrypt', N: DEFAULT_KDF_PARAMS.N, r: DEFAULT_KDF_PARAMS.r, p: DEFAULT_KDF_PARAMS.p });
    expect(DEFAULT_KDF_PARAMS.N).toBeGreaterThanOrEqual(32768);

    const password = await repositoryPassword(app, env.destinationId);
    const listed = JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as { tags: string[] }[];
    expect(listed).toHaveLength(1);
    expect(listed[0].tags).toContain('backplane');
    expect(await restic(env.repositoryPath, password, 'check', '--read-data')).toMatch(/no errors were found/);
  });
});
