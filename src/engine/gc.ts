/**
 * A full garbage collection of the calling thread's heap, on request. V8 collects an
 * ArrayBuffer's memory only when a collection finds it dead, and an idle thread allocates
 * nothing that would start one: buffers dropped when work ends (pack buffers, pack.ts) would
 * otherwise stay resident until the next job, and that job's fresh buffers would come on top.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** Collects the whole heap of this thread (a few tens of milliseconds for a server's). */
export function collectGarbage(): void {
  if (!gc) {
    // --expose-gc takes effect for contexts created after it; the function works on the
    // heap of the thread that calls it.
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
