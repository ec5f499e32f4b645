/**
 * contentWriter: a file's content written into a pipe by a codec thread (how a restore feeds
 * pg_restore), or given as a stream where no pipe can be made.
 */
import { closeSync, createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendNotFoundError } from '../../src/destinations/backend.ts';
import { IntegrityError, contentWriter, type Node, type Repository } from '../../src/engine/api.ts';
import { goModeFromUnix } from '../../src/engine/tree.ts';
import { openPipe } from '../../src/sources/pipe.ts';
import { cleanupTempDirs, newRepo, seededBytes } from './helpers.ts';

afterAll(cleanupTempDirs);

const T = '2024-01-01T00:00:00Z';

const partSize = (i: number) => 200_000 + i * 7_919;

/** A file node of `count` stored blobs of varied sizes, more bytes than the writer keeps in flight. */
async function bigFile(repo: Repository, count = 48): Promise<{ node: Node; bytes: Buffer }> {
  // Every other part compressible, so that both stored forms (and pieces of a decompressing blob) are met.
  const text = (i: number) => Buffer.from(`row ${i};`.repeat(Math.ceil(partSize(i) / 6))).subarray(0, partSize(i));
  const parts = Array.from({ length: count }, (_, i) => (i % 2 ? text(i) : seededBytes(`part-${i}`, partSize(i))));
  const ids: string[] = [];
  for (const p of parts) ids.push((await repo.saveBlob('data', p)).id);
  await repo.flush();
  const bytes = Buffer.concat(parts);
  const node: Node = { name: 'dump', type: 'file', mode: goModeFromUnix(0o100600), mtime: T, atime: T, ctime: T, uid: 0, gid: 0, size: bytes.length, content: ids };
  return { node, bytes };
}

/** A pipe whose read end is read to the end here; `read` settles with everything read. */
async function pipeReader() {
  const pipe = (await openPipe())!;
  const chunks: Buffer[] = [];
  const stream = createReadStream('', { fd: pipe.readFd });
  const read = new Promise<Buffer>((resolve, reject) => {
    stream.on('data', (c) => chunks.push(c as Buffer));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
  return { writeFd: pipe.writeFd, read };
}

describe('contentWriter', () => {
  it('writes a file of many blobs into a pipe in order, and counts them; its stream gives the same bytes', async () => {
    const { repo } = await newRepo();
    const { node, bytes } = await bigFile(repo);
    let counted = 0;
    const { writeFd, read } = await pipeReader();
    // Stored compressed: its plaintext reaches the pipe in pieces as it decompresses.
    expect(repo.lookupBlob('data', node.content![1])!.uncompressedLength).toBe(partSize(1));
    await contentWriter(repo, node, { onBytes: (n) => (counted += n) }).writeTo(writeFd);
    closeSync(writeFd);
    expect((await read).equals(bytes)).toBe(true);
    expect(counted).toBe(bytes.length);

    let streamed = 0;
    const stream = contentWriter(repo, node, { onBytes: (n) => (streamed += n) }).stream();
    expect((await buffer(stream)).equals(bytes)).toBe(true);
    expect(streamed).toBe(bytes.length);
  });

  it('rejects with IntegrityError at a damaged blob and writes nothing after it', async () => {
    const { repo, dir } = await newRepo();
    const { node, bytes } = await bigFile(repo);
    // Damage a blob in the middle of the file: the ones before it arrive whole, none after.
    const victim = repo.lookupBlob('data', node.content![20])!;
    const fh = await open(join(dir, 'data', victim.packId.slice(0, 2), victim.packId), 'r+');
    await fh.write(Buffer.from([0xff ^ (await fh.read(Buffer.alloc(1), 0, 1, victim.offset + 40)).buffer[0]]), 0, 1, victim.offset + 40);
    await fh.close();
    const { writeFd, read } = await pipeReader();
    const err = await contentWriter(repo, node).writeTo(writeFd).catch((e: unknown) => e);
    closeSync(writeFd);
    expect(err).toBeInstanceOf(IntegrityError);
    const got = await read;
    let before = 0;
    for (let i = 0; i < 20; i++) before += partSize(i);
    expect(got.length).toBe(before);
    expect(got.equals(bytes.subarray(0, before))).toBe(true);
  });

  it('fails with EPIPE, rather than waiting, when the reader is gone', async () => {
    const { repo } = await newRepo();
    const { node } = await bigFile(repo, 8);
    const pipe = (await openPipe())!;
    closeSync(pipe.readFd);
    const err = await contentWriter(repo, node).writeTo(pipe.writeFd).catch((e: unknown) => e);
    closeSync(pipe.writeFd);
    expect((err as NodeJS.ErrnoException).code).toBe('EPIPE');
  });

  it('reports a missing pack as the backend reports it, naming the pack', async () => {
    const { repo, dir } = await newRepo();
    const { node } = await bigFile(repo, 8);
    const packId = repo.lookupBlob('data', node.content![0])!.packId;
    await rm(join(dir, 'data', packId.slice(0, 2), packId));
    const { writeFd, read } = await pipeReader();
    const err = await contentWriter(repo, node).writeTo(writeFd).catch((e: unknown) => e);
    closeSync(writeFd);
    await read;
    expect(err).toBeInstanceOf(BackendNotFoundError);
    expect((err as BackendNotFoundError).handle.name).toBe(packId);
  });

  it('stops at destroy(): writeTo rejects and the pipe gets no more', async () => {
    const { repo } = await newRepo();
    const { node, bytes } = await bigFile(repo);
    const { writeFd, read } = await pipeReader();
    const writer = contentWriter(repo, node, {
      onBytes: () => writer.destroy(),
    });
    const err = await writer.writeTo(writeFd).catch((e: unknown) => e);
    closeSync(writeFd);
    expect(err).toBeInstanceOf(Error);
    expect((await read).length).toBeLessThan(bytes.length);
  });
});
