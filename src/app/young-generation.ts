/**
 * A server holds V8's young generation small. V8 doubles a thread's young generation (up to two
 * 16 MiB semi-spaces on a main thread) whenever a scavenge finds much of it alive, and gives the
 * memory back only when its memory reducer runs, a minute or more later, if at all. Start-up
 * (loading modules, building the schema, Prisma's client) keeps most of what it allocates, so it
 * grew the API thread's to 32 MiB that an idle server then held; requests at 20 a second grew it
 * there too, a tenth of the server's memory during a job. What lives on is promoted sooner
 * instead, which start-up's long-lived objects are anyway, and a request's garbage dies in a
 * young generation of a few MiB as well as in 32.
 *
 * The growth factor is the one young-generation setting V8 reads at each growth rather than
 * once when a heap is made, so a running process can change it (the maximum,
 * --max-semi-space-size, needs the command line). It is process-wide: the job thread and the
 * codec threads are held with the API thread. Until the server is up no thread's young
 * generation grows; after that the API thread's grows up to YOUNG_GENERATION_CAP_BYTES, watched
 * after each of its collections, and none grows while it is there.
 *
 * Only where the API is served (the memory aim is the idle API's). A worker process (`backplane
 * worker`) runs its jobs on its main thread, whose garbage is a job's buffers and rows: held at
 * 8 MiB it scavenged more often for the same jobs, so after start-up its young generation grows
 * by V8's own rule (restoreYoungGeneration). Start-up is held there too: it keeps little.
 */
import { PerformanceObserver, constants, type NodeGCPerformanceDetail } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/** V8's default factor. */
const GROWTH_FACTOR = 2;

/** The API thread's young generation once the server is up (V8's new space: both semi-spaces), bytes; a power of two, as V8 doubles it from 1 MiB. */
export const YOUNG_GENERATION_CAP_BYTES = 8 * 1024 * 1024;

let factor: number | undefined;
let observer: PerformanceObserver | undefined;

function setGrowthFactor(f: number): void {
  if (f === factor) return;
  factor = f;
  setFlagsFromString(`--semi-space-growth-factor=${f}`);
}

/** This thread's young generation (V8's new space), bytes. */
export function youngGenerationBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** From now until releaseYoungGeneration, no thread's young generation grows. */
export function holdYoungGeneration(): void {
  observer?.disconnect();
  observer = undefined;
  setGrowthFactor(1);
}

/** Young generations grow by V8's own rule again, without a cap: a process that serves no API. */
export function restoreYoungGeneration(): void {
  observer?.disconnect();
  observer = undefined;
  setGrowthFactor(GROWTH_FACTOR);
}

/**
 * Young generations grow again, by V8's rule, until this thread's reaches `capBytes`: then growth
 * is held until it is smaller again (V8's memory reducer shrinks it when the thread goes quiet).
 */
export function releaseYoungGeneration(capBytes = YOUNG_GENERATION_CAP_BYTES): void {
  observer?.disconnect();
  const check = (): void => setGrowthFactor(youngGenerationBytes() >= capBytes ? 1 : GROWTH_FACTOR);
  check();
  // After every scavenge of this thread: V8 decides on growth at the end of one, so the factor
  // set here applies from the next, and a doubling never passes a power-of-two cap.
  observer = new PerformanceObserver((list) => {
    if (list.getEntries().some((e) => (e as { detail?: NodeGCPerformanceDetail }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR)) check();
  });
  observer.observe({ entryTypes: ['gc'] });
}
