import { afterAll, describe, expect, it, vi } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CodecPool, keepCodecThreadsWarm, prestartCodecThreads, spareCodecThreads } from '../../src/engine/codec-pool.ts';
import { decodeBlob, encodeBlob } from '../../src/engine/blob-codec.ts';
import { IntegrityError } from '../../src/engine/errors.ts';
import { newRandomKey } from '../../src/engine/crypto.ts';
import { hashId } from '../../src/engine/ids.ts';
import { findCut, masksFor } from '../../src/engine/chunker-core.mjs';
import { setBackgroundNice } from '../../src/engine/priority.ts';
import { backup, InvalidSourceError } from '../../src/engine/archiver.ts';
import { listSnapshots } from '../../src/engine/snapshot.ts';
import { openPipe, PipeReader } from '../../src/sources/pipe.ts';
import { cleanupTempDirs, newRepo, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

const PARAMS = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

describe('codec pool scans', () => {
  // A ring smaller than the largest blobs: blobs wrap around it, threads wait for room, and
  // blobs larger than the whole ring travel in buffers of their own. Every blob must arrive
  // intact however slowly the main thread takes them.
  it('hands every blob over intact through a small ring, slow consumer included', async () => {
    const dir = await tempDir();
    const files: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      small: seededBytes('small', 10_000),
      text: Buffer.from('compressible line\n'.repeat(40_000)),
      random: seededBytes('random', 1024 * 1024 + 77),
      zeros: Buffer.alloc(700 * 1024),
    };
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
    const names = Object.keys(files).sort();
    const key = newRandomKey();
    const pool = new CodecPool(key, 2, true, 96 * 1024);
    try {
      const blobs = new Map<string, Buffer>();
      const contents = new Map<string, string[]>();
      let slow = 0;
      await pool.scan(
        { dir, names, parents: names.map(() => null), params: PARAMS },
        {
          onBlob: async (m, data) => {
            // Every other blob is taken a turn later, so the thread finds the ring full.
            if (slow++ % 2 === 0) await nextTurn();
            blobs.set(m.id, decodeBlob(key, m.id, data, m.uncompressedLength ?? undefined));
          },
          onEntry: (m) => {
            expect(m.error).toBeUndefined();
            contents.set(names[m.index], m.content ?? []);
          },
        },
      );
      for (const name of names) {
        const ids = contents.get(name)!;
        const back = Buffer.concat(ids.map((id) => blobs.get(id)!));
        expect(back.equals(files[name]), name).toBe(true);
        for (const id of ids) expect(hashId(blobs.get(id)!)).toBe(id);
      }
      // 256 KiB chunks of random data do not fit the 96 KiB ring: that path was taken too.
      expect(contents.get('random')!.length).toBeGreaterThan(4);
    } finally {
      await pool.close();
    }
  });

  it('reads files of a batch up to maxBytes (its first file whatever its size) and reports the rest as later, unread', async () => {
    const dir = await tempDir();
    const sizes: Record<string, number> = { a: 300_000, b: 10_000, c: 250_000, d: 5_000, e: 900_000 };
    for (const [name, n] of Object.entries(sizes)) await writeFile(join(dir, name), seededBytes(name, n));
    const names = Object.keys(sizes);
    const pool = new CodecPool(newRandomKey(), 1);
    try {
      const read: string[] = [];
      const later: Record<string, number> = {};
      const blobsOf = new Set<number>();
      await pool.scan(
        { dir, names, parents: names.map(() => null), params: PARAMS, maxBytes: 320_000 },
        {
          onBlob: (m) => void blobsOf.add(m.index),
          onEntry: (m) => {
            if (m.later !== undefined) later[names[m.index]] = m.later;
            else read.push(names[m.index]);
          },
        },
      );
      // a fills most of the budget; b still fits; c would pass it; d fits; e is larger than all of it.
      expect(read).toEqual(['a', 'b', 'd']);
      expect(later).toEqual({ c: 250_000, e: 900_000 });
      expect([...blobsOf].sort()).toEqual([0, 1, 3]);
      // A batch of one file reads it however large it is.
      const alone: string[] = [];
      await pool.scan({ dir, names: ['e'], parents: [null], params: PARAMS, maxBytes: 1000 }, { onBlob: () => {}, onEntry: (m) => void alone.push(m.later === undefined ? 'read' : 'later') });
      expect(alone).toEqual(['read']);
    } finally {
      await pool.close();
    }
  });

  it('rejects a scan whose blob handler fails, and hands the failure to the caller', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'a'), seededBytes('a', 300 * 1024));
    const pool = new CodecPool(newRandomKey(), 1, true, 96 * 1024);
    try {
      const err = await pool
        .scan({ dir, names: ['a'], parents: [null], params: PARAMS }, { onBlob: () => Promise.reject(new Error('disk full')), onEntry: () => {} })
        .catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/disk full/);
    } finally {
      await pool.close();
    }
  });
});

/** The chunks findCut gives over the whole input: what a stream must be cut into. */
function expectedChunks(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let pos = 0; pos < data.length; ) {
    const cut = findCut(data, pos, data.length, PARAMS, masksFor(PARAMS.avg), true);
    out.push(data.subarray(pos, cut));
    pos = cut;
  }
  return out;
}

/** data in pieces of uneven sizes, as a pipe delivers them. */
async function* pieces(data: Buffer): AsyncGenerator<Buffer> {
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = 1000 + ((i * 7919) % 150_000);
    yield data.subarray(off, off + n);
    off += n;
  }
}

describe('codec pool streams', () => {
  // More than twice the shared input ring, so the copy wraps around it; the caller keeps every
  // other chunk, and the thread must seal exactly those (no speculative sealing).
  it('cuts a stream as findCut does and seals only the chunks the caller keeps', async () => {
    const data = Buffer.concat([seededBytes('stream', 9 * 1024 * 1024), Buffer.from('tail '.repeat(50_000))]);
    const expected = expectedChunks(data);
    const key = newRandomKey();
    const pool = new CodecPool(key, 2, true, 96 * 1024);
    try {
      const announced: string[] = [];
      const sealed = new Map<number, Buffer>();
      let slow = 0;
      const size = await pool.stream(pieces(data), PARAMS, {
        onChunk: (m) => {
          expect(m.k).toBe(announced.length);
          announced.push(m.id);
          return m.k % 2 === 0;
        },
        onBlob: async (m, stored) => {
          if (slow++ % 3 === 0) await nextTurn();
          sealed.set(m.index, decodeBlob(key, m.id, stored, m.uncompressedLength ?? undefined));
        },
      });
      expect(size).toBe(data.length);
      expect(announced).toEqual(expected.map((c) => hashId(c)));
      // Sealed by either thread, so in any order.
      expect([...sealed.keys()].sort((a, b) => a - b)).toEqual(expected.map((_, k) => k).filter((k) => k % 2 === 0));
      for (const [k, plain] of sealed) expect(plain.equals(expected[k])).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('stops on a failing source with its error, and the thread goes on with the next job', async () => {
    const pool = new CodecPool(newRandomKey(), 1);
    try {
      async function* failing(): AsyncGenerator<Buffer> {
        yield* pieces(seededBytes('before the failure', 3 * 1024 * 1024));
        throw new Error('pg_dump exited with code 1');
      }
      const handlers = { onChunk: () => true, onBlob: () => {} };
      await expect(pool.stream(failing(), PARAMS, handlers)).rejects.toThrow('pg_dump exited with code 1');
      const data = seededBytes('after', 500 * 1024);
      expect(await pool.stream(pieces(data), PARAMS, handlers)).toBe(data.length);
    } finally {
      await pool.close();
    }
  });

  it('stops when a blob handler fails and hands the failure to the caller', async () => {
    const pool = new CodecPool(newRandomKey(), 1);
    try {
      const err = await pool
        .stream(pieces(seededBytes('handler fails', 6 * 1024 * 1024)), PARAMS, { onChunk: () => true, onBlob: () => Promise.reject(new Error('disk full')) })
        .catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/disk full/);
    } finally {
      await pool.close();
    }
  });
});

/**
 * A process writing `file` into a new pipe, then running `then` (by default exiting 0), with
 * the pipe still its stdout; returns the read end.
 */
async function pipeFrom(file: string, then = 'exit 0'): Promise<{ fd: number; writer: ChildProcess; exited: Promise<number | null> }> {
  const ends = await openPipe();
  if (!ends) throw new Error('this platform makes no pipes');
  const writer = spawn('sh', ['-c', `cat "$1" || exit $?; ${then}`, 'sh', file], { stdio: ['ignore', ends.writeFd, 'ignore'] });
  closeSync(ends.writeFd);
  const exited = new Promise<number | null>((resolve) => writer.once('exit', (code) => resolve(code)));
  return { fd: ends.readFd, writer, exited };
}

describe('codec pool streams from a pipe', () => {
  // The cutting thread reads the pipe itself: the same cuts, the same ids, and still only the
  // chunks the caller keeps are sealed.
  it('cuts a pipe as findCut does, seals only the chunks the caller keeps, and closes the pipe', async () => {
    const data = Buffer.concat([seededBytes('pipe', 5 * 1024 * 1024), Buffer.from('tail '.repeat(50_000))]);
    const file = join(await tempDir(), 'data');
    await writeFile(file, data);
    const expected = expectedChunks(data);
    const key = newRandomKey();
    const pool = new CodecPool(key, 2);
    try {
      const { fd, exited } = await pipeFrom(file);
      const announced: string[] = [];
      const sealed = new Map<number, Buffer>();
      const size = await pool.stream({ fd }, PARAMS, {
        onChunk: (m) => {
          announced.push(m.id);
          return m.k % 3 === 0;
        },
        onBlob: (m, stored) => {
          sealed.set(m.index, decodeBlob(key, m.id, stored, m.uncompressedLength ?? undefined));
        },
      });
      expect(await exited).toBe(0);
      expect(size).toBe(data.length);
      expect(announced).toEqual(expected.map((c) => hashId(c)));
      expect([...sealed.keys()].sort((a, b) => a - b)).toEqual(expected.map((_, k) => k).filter((k) => k % 3 === 0));
      for (const [k, plain] of sealed) expect(plain.equals(expected[k])).toBe(true);
      expect(() => fstatSync(fd)).toThrow(/EBADF/);
    } finally {
      await pool.close();
    }
  });

  // The writer is still writing when the handler fails: the thread stops reading and the read
  // end is closed, so the writer gets a broken pipe instead of waiting forever.
  it('stops when a blob handler fails, and the writer sees the pipe closed', async () => {
    const file = join(await tempDir(), 'big');
    await writeFile(file, seededBytes('pipe, handler fails', 40 * 1024 * 1024));
    const pool = new CodecPool(newRandomKey(), 1);
    try {
      const { fd, exited } = await pipeFrom(file);
      const err = await pool.stream({ fd }, PARAMS, { onChunk: () => true, onBlob: () => Promise.reject(new Error('disk full')) }).catch((e: unknown) => e);
      expect((err as Error).message).toBe('disk full');
      expect(await exited).not.toBe(0); // cat: write error (broken pipe)
    } finally {
      await pool.close();
    }
  });
});

describe('backups of a pipe', () => {
  // End of file is all a reader sees when its writer dies midway: the backup must wait for the
  // writer's verdict and then store nothing.
  it('fails, storing no snapshot, when the writer fails after writing part of the stream', async () => {
    const file = join(await tempDir(), 'part');
    await writeFile(file, seededBytes('part of a dump', 3 * 1024 * 1024));
    const { repo } = await newRepo();
    try {
      const { fd, exited } = await pipeFrom(file, 'exit 3');
      const complete = exited.then((code) => {
        if (code !== 0) throw new Error(`the writer exited with code ${code}`);
      });
      const pipe = new PipeReader(fd, complete);
      await expect(backup(repo, { '/db/app.dump': { pipe } })).rejects.toThrow('the writer exited with code 3');
      expect(pipe.take()).toBeNull(); // the backup took the read end (and the pool closed it)
      expect(await listSnapshots(repo)).toEqual([]);

      const whole = await pipeFrom(file);
      const ok = new PipeReader(whole.fd, whole.exited.then(() => undefined));
      const r = await backup(repo, { '/db/app.dump': { pipe: ok } });
      expect(r.bytesProcessed).toBe(3 * 1024 * 1024);
      expect((await listSnapshots(repo)).map((sn) => sn.id)).toEqual([r.snapshotId]);
    } finally {
      await repo.close();
    }
  });

  // The stream and the directory are saved side by side; when the directory fails, the pipe's
  // writer, which has gone quiet without closing it, is stopped, or its reader would wait forever.
  it('stops the writer of a quiet pipe when another source fails', async () => {
    const { repo } = await newRepo();
    try {
      // Writes nothing and keeps the pipe open: the reading thread waits in read() whenever it starts.
      const { fd, writer, exited } = await pipeFrom('/dev/null', 'exec sleep 600');
      const pipe = new PipeReader(fd, exited.then(() => undefined), () => writer.kill());
      const missing = join(await tempDir(), 'missing');
      await expect(backup(repo, { '/db/app.dump': { pipe }, '/files': missing })).rejects.toBeInstanceOf(InvalidSourceError);
      expect(await exited).toBeNull(); // killed
      expect(await listSnapshots(repo)).toEqual([]);
    } finally {
      await repo.close();
    }
  });
});

/** This process's threads' niceness values (Linux: field 19 of /proc/self/task/<tid>/stat). */
function threadNiceness(): number[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

/** Has the pool decode a blob of `text` twice at once (on two threads); true when both come back whole. */
async function decodesTwiceAtOnce(pool: CodecPool, key: ReturnType<typeof newRandomKey>, text: string): Promise<boolean> {
  const plain = Buffer.from(text.repeat(5000));
  const id = hashId(plain);
  const blob = encodeBlob(key, 'data', id, plain);
  const [a, b] = await Promise.all([
    pool.decode(id, Buffer.from(blob.data), plain.length),
    pool.decode(id, Buffer.from(blob.data), plain.length),
  ]);
  return a.equals(plain) && b.equals(plain);
}

describe('codec pool priority', () => {
  it.runIf(process.platform === 'linux')('runs its threads at the background niceness and leaves the rest of the process alone', async () => {
    const before = threadNiceness().filter((n) => n === 7).length;
    setBackgroundNice(7);
    const pool = new CodecPool(newRandomKey(), 2);
    try {
      // One job per thread (each goes to the least busy one): both have run their start-up code.
      await Promise.all([pool.diskUsage([]), pool.diskUsage([])]);
      const after = threadNiceness();
      expect(after.filter((n) => n === 7).length - before).toBe(2);
      expect(after.filter((n) => n === 0).length).toBeGreaterThan(0); // the main thread among them
    } finally {
      setBackgroundNice(0);
      await pool.close();
    }
  });

  // A server keeps threads started so that a job's start does not pay for theirs. The spares
  // are told apart from every other thread by a niceness no one else uses.
  it.runIf(process.platform === 'linux')('hands warm spare threads to the next pool and starts replacements once it closes', async () => {
    const atNine = () => threadNiceness().filter((n) => n === 9).length;
    const key = newRandomKey();
    const plain = Buffer.from('spare '.repeat(5000));
    const id = hashId(plain);
    const blob = encodeBlob(key, 'data', id, plain);
    setBackgroundNice(9);
    try {
      await keepCodecThreadsWarm(2);
      expect(await spareCodecThreads()).toBe(2);
      expect(atNine()).toBe(2);
      const pool = new CodecPool(key, 2);
      try {
        expect(await decodesTwiceAtOnce(pool, key, 'spare ')).toBe(true);
        expect(await spareCodecThreads()).toBe(0);
        expect(atNine()).toBe(2); // the spares themselves, no new threads
      } finally {
        await pool.close();
      }
      expect(await spareCodecThreads()).toBe(2);
      expect(atNine()).toBe(2);
      // A pool for another niceness leaves the spares alone.
      setBackgroundNice(0);
      const other = new CodecPool(key, 1);
      try {
        expect((await other.decode(id, Buffer.from(blob.data), plain.length)).equals(plain)).toBe(true);
        expect(await spareCodecThreads()).toBe(2);
      } finally {
        await other.close();
      }
    } finally {
      setBackgroundNice(0);
      await keepCodecThreadsWarm(0);
    }
    expect(await spareCodecThreads()).toBe(0);
    expect(atNine()).toBe(0);
  });

  // A command line starts its backup's threads before it derives the key; the pool takes them,
  // and once it closes none start again (the process is about to end).
  it.runIf(process.platform === 'linux')('prestarted threads go to the next pool and are not replaced', async () => {
    const atSix = () => threadNiceness().filter((n) => n === 6).length;
    const key = newRandomKey();
    setBackgroundNice(6);
    try {
      prestartCodecThreads(2);
      expect(await spareCodecThreads()).toBe(2);
      expect(atSix()).toBe(2);
      const pool = new CodecPool(key, 2);
      try {
        expect(await decodesTwiceAtOnce(pool, key, 'early ')).toBe(true);
        expect(await spareCodecThreads()).toBe(0);
        expect(atSix()).toBe(2); // the prestarted threads, no others
      } finally {
        await pool.close();
      }
      expect(await spareCodecThreads()).toBe(0);
      await vi.waitFor(() => expect(atSix()).toBe(0), { timeout: 10_000, interval: 50 });
    } finally {
      setBackgroundNice(0);
      await keepCodecThreadsWarm(0);
    }
  });

  // A server's spares exist only between jobs that follow one another: none before the first
  // pool, replacements once it closes, and none again after idleMs in which no pool took them.
  it.runIf(process.platform === 'linux')('with idleMs, starts spares only when a pool closes and stops them after that long unused', async () => {
    const atEight = () => threadNiceness().filter((n) => n === 8).length;
    const key = newRandomKey();
    const plain = Buffer.from('idle '.repeat(5000));
    const id = hashId(plain);
    const blob = encodeBlob(key, 'data', id, plain);
    setBackgroundNice(8);
    try {
      await keepCodecThreadsWarm(2, { idleMs: 300 });
      expect(await spareCodecThreads()).toBe(0);
      expect(atEight()).toBe(0);
      const pool = new CodecPool(key, 2);
      try {
        expect((await pool.decode(id, Buffer.from(blob.data), plain.length)).equals(plain)).toBe(true);
      } finally {
        await pool.close();
      }
      expect(await spareCodecThreads()).toBe(2);
      await vi.waitFor(() => expect(atEight()).toBe(0), { timeout: 10_000, interval: 50 });
      expect(await spareCodecThreads()).toBe(0);
    } finally {
      setBackgroundNice(0);
      await keepCodecThreadsWarm(0);
    }
  });

  // Spares are for the job that comes next: one running does not keep idle ones beside it (at
  // a backup's peak they were two threads' memory), and a small pool (a WAL upload, every archive
  // interval) is replaced by as many threads as it had, not by a backup's worth kept for ever.
  it.runIf(process.platform === 'linux')('with idleMs, a pool stops the spares it does not take and is replaced by as many threads as it had', async () => {
    const atSeven = () => threadNiceness().filter((n) => n === 7).length;
    const key = newRandomKey();
    const plain = Buffer.from('few '.repeat(5000));
    const id = hashId(plain);
    const blob = encodeBlob(key, 'data', id, plain);
    setBackgroundNice(7);
    try {
      await keepCodecThreadsWarm(2, { idleMs: 60_000 });
      const big = new CodecPool(key, 2);
      try {
        expect((await big.decode(id, Buffer.from(blob.data), plain.length)).equals(plain)).toBe(true);
      } finally {
        await big.close();
      }
      expect(await spareCodecThreads()).toBe(2);
      const small = new CodecPool(key, 1);
      try {
        expect((await small.decode(id, Buffer.from(blob.data), plain.length)).equals(plain)).toBe(true);
        expect(await spareCodecThreads()).toBe(0);
        await vi.waitFor(() => expect(atSeven()).toBe(1), { timeout: 10_000, interval: 50 });
      } finally {
        await small.close();
      }
      expect(await spareCodecThreads()).toBe(1);
      await vi.waitFor(() => expect(atSeven()).toBe(1), { timeout: 10_000, interval: 50 });
    } finally {
      setBackgroundNice(0);
      await keepCodecThreadsWarm(0);
    }
    expect(await spareCodecThreads()).toBe(0);
  });

  it('refuses a pool without threads', () => {
    expect(() => new CodecPool(newRandomKey(), 0)).toThrow(RangeError);
  });

  it('refuses a niceness outside 0-19', () => {
    expect(() => setBackgroundNice(20)).toThrow(RangeError);
    expect(() => setBackgroundNice(-1)).toThrow(RangeError);
  });
});

describe('blob decoding', () => {
  // The pack header records each compressed blob's plaintext length; decompression writes into
  // exactly that much room, so a header that lies fails instead of allocating what the frame says.
  it('refuses a compressed blob whose recorded length is wrong, in the pool and inline', async () => {
    const key = newRandomKey();
    const plain = Buffer.from('compressible '.repeat(10_000));
    const id = hashId(plain);
    const blob = encodeBlob(key, 'data', id, plain);
    expect(blob.uncompressedLength).toBe(plain.length);
    expect(decodeBlob(key, id, blob.data, plain.length).equals(plain)).toBe(true);
    for (const wrong of [plain.length - 1, plain.length + 1]) {
      expect(() => decodeBlob(key, id, blob.data, wrong)).toThrow(IntegrityError);
    }
    const pool = new CodecPool(key, 1);
    try {
      expect((await pool.decode(id, Buffer.from(blob.data), plain.length)).equals(plain)).toBe(true);
      await expect(pool.decode(id, Buffer.from(blob.data), plain.length - 1)).rejects.toThrow(/zstd decompression failed/);
      await expect(pool.decode(id, Buffer.from(blob.data), plain.length + 1)).rejects.toThrow(/decompressed \d+ bytes, expected/);
    } finally {
      await pool.close();
    }
  });
});
