/**
 * Where a process runs its jobs. `backplane worker` runs them on its main thread. `backplane
 * start` (API and worker in one process) runs them on a thread of their own: a job's own
 * JavaScript (Prisma's first query shapes, new catalog connections, spawning pg_dump, handing
 * blobs to the codec threads, writing packs) then never waits in line with the API's requests on
 * one event loop. The thread is a second runtime with its own catalog connections and event bus
 * connection; like a worker process, it reaches the API through the catalog and LISTEN/NOTIFY.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker as Thread, parentPort, workerData } from 'node:worker_threads';
import { defaultCodecThreads, keepCodecThreadsWarm } from '../engine/codec-pool.ts';
import { setBackgroundNice } from '../engine/priority.ts';
import { loadConfig, type Config } from './config.ts';
import { createLogger, type Logger } from './logger.ts';
import { createRuntime, type Runtime } from './runtime.ts';
import { startWorker } from './worker.ts';

export interface Jobs {
  stop(): Promise<void>;
}

/**
 * How long codec threads stay started after a job for the next one. The first job after a longer
 * idle time starts its own (tens of milliseconds of a core per thread, at its start); an idle
 * server holds none (about 11 MiB each).
 */
const CODEC_SPARES_IDLE_MS = 60_000;

/** graphile-worker, its sweeper, and what a job's first seconds would otherwise start: codec threads. */
export async function startJobs(config: Config, runtime: Runtime, databaseUrl: string, logger: Logger): Promise<Jobs> {
  setBackgroundNice(config.JOB_NICE);
  await keepCodecThreadsWarm(defaultCodecThreads(), { idleMs: CODEC_SPARES_IDLE_MS });
  const worker = await startWorker({
    deps: runtime.deps,
    databaseUrl,
    concurrency: config.WORKER_CONCURRENCY,
    logger,
    staleAfterMs: config.OPERATION_STALE_MS,
    shutdownGraceMs: config.JOB_SHUTDOWN_GRACE_MS,
    pitr: { home: config.home, slotWarnBytes: config.PITR_SLOT_WARN_BYTES, slotCapBytes: config.PITR_SLOT_CAP_BYTES },
  });
  return {
    async stop() {
      await worker.stop();
      await keepCodecThreadsWarm(0);
    },
  };
}

/** What the main thread hands the job thread: the catalog (the embedded one has no DATABASE_URL). */
interface ThreadData {
  backplaneJobThread: true;
  databaseUrl: string;
}

type ThreadMessage = { type: 'ready' } | { type: 'stop' };

/** The job thread's young generation (V8: two semi-spaces and a large-object space of that size, each a third). */
const JOB_THREAD_YOUNG_MB = 12;

/** The `backplane` entry: it picks the build or the TypeScript sources, in the thread as in the process. */
function entryPath(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const bin = path.join(dir, 'bin', 'backplane.js');
    if (existsSync(bin)) return bin;
    if (path.dirname(dir) === dir) throw new Error('bin/backplane.js not found above ' + fileURLToPath(import.meta.url));
  }
}

/**
 * Starts the job thread and resolves once its worker runs. `onExit` hears of a thread that ends
 * without being asked to (a crash), so the process can stop as a whole.
 */
export async function startJobThread(opts: { databaseUrl: string; logger: Logger; onExit(code: number): void }): Promise<Jobs> {
  const data: ThreadData = { backplaneJobThread: true, databaseUrl: opts.databaseUrl };
  // A smaller young generation than V8 gives a main thread (semi-spaces of 16 MiB, which a
  // thread that allocates in bursts keeps grown): the job thread's objects are few and short-
  // lived (catalog rows, progress, codec messages), the bytes live in buffers outside the heap.
  const thread = new Thread(entryPath(), { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: JOB_THREAD_YOUNG_MB } });
  let stopping = false;
  const exited = new Promise<number>((resolve) => thread.once('exit', resolve));
  thread.on('error', (err) => opts.logger.error({ err }, 'job thread failed'));
  await new Promise<void>((resolve, reject) => {
    thread.on('message', (m: ThreadMessage) => m.type === 'ready' && resolve());
    void exited.then((code) => reject(new Error(`the job thread exited with code ${code} before its worker started; see the log above`)));
  });
  void exited.then((code) => {
    if (!stopping) opts.onExit(code);
  });
  return {
    async stop() {
      stopping = true;
      thread.postMessage({ type: 'stop' } satisfies ThreadMessage);
      await exited;
    },
  };
}

/** True in a job thread, where main.ts runs `runJobThread` instead of a command. */
export function isJobThread(): boolean {
  return (workerData as Partial<ThreadData> | null)?.backplaneJobThread === true;
}

/** The job thread's body: a runtime and the jobs on it, until the main thread says stop. */
export async function runJobThread(): Promise<void> {
  const { databaseUrl } = workerData as ThreadData;
  const port = parentPort!;
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, { thread: 'jobs' });
  const runtime = await createRuntime(config, databaseUrl, logger);
  let jobs: Jobs;
  try {
    jobs = await startJobs(config, runtime, databaseUrl, logger);
  } catch (err) {
    await runtime.close().catch(() => undefined);
    throw err;
  }
  port.on('message', (m: ThreadMessage) => {
    if (m.type !== 'stop') return;
    jobs
      .stop()
      .then(() => runtime.close())
      .then(
        () => port.close(),
        (err) => {
          logger.error({ err }, 'job thread stop failed');
          process.exit(1);
        },
      );
  });
  port.postMessage({ type: 'ready' } satisfies ThreadMessage);
}
