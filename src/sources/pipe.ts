/**
 * Pipes whose read end a codec thread reads with blocking reads (the engine's PipeSource), so a
 * child process's output reaches the engine without passing through the main thread; and, for a
 * restore, pipes whose write end a codec thread writes into (restore-common.ts restoreInput).
 *
 * Node has no pipe(2), so a FIFO in a private temporary directory stands in for one. It is
 * opened read-write first, which on Linux never blocks and lets the read-only and write-only
 * opens that follow return at once; then the read-write end and the FIFO's name go away, and
 * what is left behaves as an anonymous pipe. Elsewhere openPipe() returns null and callers use
 * streams.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { PipeSource } from '../engine/api.ts';

const run = promisify(execFile);

/**
 * Both ends of a new pipe, blocking; the caller closes them. Null where pipes are not made this
 * way. Asynchronous because starting mkfifo takes tens of milliseconds, too long to block on.
 */
export async function openPipe(): Promise<{ readFd: number; writeFd: number } | null> {
  if (process.platform !== 'linux') return null;
  const dir = await mkdtemp(path.join(tmpdir(), 'backplane-pipe-'));
  try {
    const fifo = path.join(dir, 'fifo');
    try {
      await run('mkfifo', ['-m', '600', fifo]);
    } catch {
      return null; // no mkfifo here
    }
    const both = openSync(fifo, constants.O_RDWR);
    try {
      const readFd = openSync(fifo, constants.O_RDONLY);
      try {
        return { readFd, writeFd: openSync(fifo, constants.O_WRONLY) };
      } catch (err) {
        closeSync(readFd);
        throw err;
      }
    } finally {
      closeSync(both);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A pipe's read end handed to one reader: take() gives the descriptor away once (the reader
 * closes it); close() closes it unless it was taken. Call close() when the reader's work is over
 * either way, so a read end nobody took does not leak.
 */
export class PipeReader implements PipeSource {
  #fd: number | null;

  constructor(
    fd: number,
    /** Settles when the writer is done (see PipeSource). */
    readonly complete: Promise<void>,
    /** Stops the writer (see PipeSource). */
    private readonly stopWriter: () => void = () => {},
  ) {
    this.#fd = fd;
    // Its reader awaits it once the pipe is read; a writer may fail well before that.
    complete.catch(() => {});
  }

  take(): number | null {
    const fd = this.#fd;
    this.#fd = null;
    return fd;
  }

  cancel(): void {
    this.stopWriter();
  }

  close(): void {
    const fd = this.take();
    if (fd !== null) closeSync(fd);
  }
}
