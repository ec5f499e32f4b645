import type { Deps } from './deps.ts';
import { TimedOutError, watchCancellation } from './operations.ts';

/**
 * The limits every job runs under, shared by the snapshot, restore, copy and verify jobs: the
 * operation's cancel request, the environment's timeout, the worker's shutdown, and the heartbeat
 * that tells the sweeper the job is alive.
 */

/** Runs an abortable piece of work under the operation's cancel request and the environment's timeout. */
export async function underLimits<T>(
  deps: Deps,
  operationId: string,
  timeoutSeconds: number,
  jobSignal: AbortSignal | undefined,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const cancel = watchCancellation(deps, operationId);
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new TimedOutError(timeoutSeconds)), timeoutSeconds * 1000);
  const heartbeat = setInterval(() => {
    void deps.db.operation.update({ where: { id: operationId }, data: { heartbeatAt: deps.clock.now() } }).catch(() => undefined);
  }, deps.heartbeatMs ?? 5000);
  const signals = [cancel.signal, timeout.signal, ...(jobSignal ? [jobSignal] : [])];
  const signal = AbortSignal.any(signals);
  try {
    return await work(signal);
  } catch (err) {
    // Report why it stopped, not the generic abort error of whichever layer noticed first.
    const reason = signals.find((s) => s.aborted)?.reason;
    throw reason instanceof Error ? reason : err;
  } finally {
    clearTimeout(timer);
    clearInterval(heartbeat);
    cancel.stop();
  }
}
