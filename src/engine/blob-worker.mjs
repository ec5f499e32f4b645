/**
 * Entry of a codec thread (codec-thread.mjs does the work). It lowers the thread's priority
 * first (engine/priority.ts), before the codec modules load: zstd, WebAssembly and the module
 * graph take a core for tens of milliseconds per thread, at every job's start. Linux gives each
 * thread its own niceness, set through its thread id; elsewhere, or when not permitted, the
 * thread keeps normal priority.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

if (workerData.nice) {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), workerData.nice);
  } catch {
    // run at normal priority
  }
}
await import('./codec-thread.mjs');
parentPort.postMessage({ type: 'ready' }); // a spare thread is warm (codec-pool.ts)
