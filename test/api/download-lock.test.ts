/**
 * A download reads the snapshot under the repository's shared lock, as a restore does: a delete
 * asked for while a download streams waits for it (its forget takes the exclusive lock) and says
 * so, rather than pruning packs the download has yet to read. The lock goes with the response:
 * read whole, or the client gone. The download is held halfway by its client not reading: a
 * paused response, with far more archive left than the socket buffers hold.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteSnapshotDocument, SnapshotDownloadDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { rawId } from '../harness/factories.ts';
import { repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { until } from '../harness/process.ts';
import { follow, restic, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite());
  // 40 MB that zstd cannot shrink: several packs, and far more than the sockets between us buffer.
  await fs.writeFile(path.join(env.filesPath, 'large.bin'), randomBytes(40 << 20));
});
afterAll(() => app?.stop());

async function downloadUrl(snapshotId: string): Promise<string> {
  const d = (await app.gql(SnapshotDownloadDocument, { id: snapshotId, variant: 'FILES_ONLY' }, { key })).data!.snapshot!.download;
  if (d.__typename !== 'Download') throw new Error(JSON.stringify(d));
  return d.url;
}

/** A GET whose body is not read until asked: the first chunk is in, then the response pauses. */
async function pausedDownload(url: string) {
  const req = http.get(url);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject));
  expect(res.statusCode).toBe(200);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) =>
    res.once('data', (chunk: Buffer) => {
      chunks.push(chunk);
      res.pause();
      resolve();
    }),
  );
  return {
    req,
    /** Reads the rest; the whole body, or the error that cut it. */
    async rest(): Promise<Buffer> {
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      await new Promise<void>((resolve, reject) => {
        res.once('end', resolve).once('error', reject);
        res.once('close', () => !res.complete && reject(new Error('the download was cut off')));
        res.resume();
      });
      return Buffer.concat(chunks);
    },
  };
}

const locksHeld = async () => (await fs.readdir(path.join(env.repositoryPath, 'locks')).catch(() => [])).length;

describe('a download and the repository lock', () => {
  it('a delete waits for a download in progress, which gets every byte, then deletes', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    const repoSnapshotId = (await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: rawId(snapshotId) } })).repoSnapshotId!;
    const url = await downloadUrl(snapshotId);
    const whole = Buffer.from(await (await fetch(url)).arrayBuffer());
    expect(whole.length).toBeGreaterThan(40 << 20);

    const download = await pausedDownload(url);
    const del = await app.gql(DeleteSnapshotDocument, { input: { id: snapshotId } }, { key });
    if (del.data?.deleteSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(del));
    const deleteOp = del.data.deleteSnapshot.operation.id;
    // Either the delete ends while the download is held (the harm), or it says it waits.
    const waiting = await until(
      () => app.runtime.db.operation.findUniqueOrThrow({ where: { id: rawId(deleteOp) } }),
      (op) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status) || /Waiting for the repository lock/.test(op.message ?? ''),
      'the delete to end or wait',
      60_000,
    );
    const body = await download.rest().catch((err: unknown) => err);
    expect(body).toBeInstanceOf(Buffer);
    expect((body as Buffer).equals(whole)).toBe(true);
    expect(waiting.status).toBe('RUNNING');

    expect((await follow(app, key, deleteOp)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: rawId(snapshotId) } })).status).toBe('DELETED');
    const password = await repositoryPassword(app, env.destinationId);
    expect(await restic(env.repositoryPath, password, 'snapshots', '--json')).not.toContain(repoSnapshotId);
    expect(await locksHeld()).toBe(0);
    // The link outlives the snapshot: a typed refusal before any byte.
    const gone = await fetch(url);
    expect(gone.status).toBe(409);
    expect(await gone.json()).toMatchObject({ code: 'SNAPSHOT_NOT_READY' });
  });

  it('a client that leaves halfway leaves no lock behind, and a delete then goes through', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    const download = await pausedDownload(await downloadUrl(snapshotId));
    expect(await locksHeld()).toBe(1);
    download.req.destroy();
    await until(locksHeld, (n) => n === 0, 'the download’s lock to go');

    const del = await app.gql(DeleteSnapshotDocument, { input: { id: snapshotId } }, { key });
    if (del.data?.deleteSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(del));
    expect((await follow(app, key, del.data.deleteSnapshot.operation.id)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
  });

  it('a range that ends early stops reading and lets the lock go', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    const url = await downloadUrl(snapshotId);
    // Measured first (the length), then made again up to the range's end only.
    const part = await fetch(url, { headers: { range: 'bytes=0-999' } });
    expect(part.status).toBe(206);
    expect((await part.arrayBuffer()).byteLength).toBe(1000);
    await until(locksHeld, (n) => n === 0, 'the download’s lock to go');
  });
});
