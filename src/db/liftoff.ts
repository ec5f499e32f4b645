/**
 * Prisma 7's query compiler (and the schema engine that applies migrations) are WebAssembly
 * modules of a few MB. V8 compiles such a module with its baseline compiler (Liftoff) and then
 * again with its optimizing one (TurboFan): the second compile takes about 35 MiB of compiler
 * memory, which the allocator keeps in the process afterwards, plus its code. Measured on
 * `backplane start`, a client compiled with Liftoff alone used about 60 MiB less resident
 * memory after 300 queries, and ran them no slower: compiling a query plan is a small part of
 * a query, and TurboFan's compile burnt a core for seconds meanwhile.
 *
 * V8's flags belong to the whole process and are read when a module is compiled, so the flag
 * is set only around the compile, at start-up, before any codec thread starts: their Poly1305
 * (engine/poly1305.mjs) needs TurboFan, and with Liftoff alone it authenticates about 17%
 * slower. A module compiled meanwhile on another thread would only run slower, not wrongly.
 */
import { setFlagsFromString } from 'node:v8';

/** Runs `compile` (which compiles a WebAssembly module and returns once it has) with Liftoff only. */
export async function withLiftoffOnly<T>(compile: () => Promise<T>): Promise<T> {
  setFlagsFromString('--liftoff-only');
  try {
    return await compile();
  } finally {
    setFlagsFromString('--no-liftoff-only');
  }
}
