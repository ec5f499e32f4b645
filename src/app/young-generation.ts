/**
 * A server's start-up holds V8's young generation at its initial size. V8 doubles a thread's
 * young generation (up to two 16 MiB semi-spaces on a main thread) whenever a scavenge finds much
 * of it alive, and gives the memory back only when its memory reducer runs, a minute or more
 * later, if at all. Start-up (loading modules, building the schema, Prisma's client) keeps most
 * of what it allocates, so it grew the API thread's to 32 MiB that an idle server then held.
 * What lives on is promoted sooner instead, which start-up's long-lived objects are anyway. The
 * growth factor is the one young-generation setting V8 reads at each growth rather than once when
 * a heap is made, so a running process can change it (the maximum, --max-semi-space-size, needs
 * the command line); it is process-wide, so the job thread started meanwhile is held too. Once
 * the server is up, growth is V8's again: under load a larger young generation costs fewer
 * collections, and this does not keep it small then.
 */
import { setFlagsFromString } from 'node:v8';

/** V8's default factor. */
const GROWTH_FACTOR = 2;

/** From now until releaseYoungGeneration, no thread's young generation grows. */
export function holdYoungGeneration(): void {
  setFlagsFromString('--semi-space-growth-factor=1');
}

/** Young generations grow again as V8 decides. */
export function releaseYoungGeneration(): void {
  setFlagsFromString(`--semi-space-growth-factor=${GROWTH_FACTOR}`);
}
