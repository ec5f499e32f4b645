/**
 * Backplane's side of the benchmark: the `backplane repo` command code (src/cli/repo.ts) in a
 * process of its own, like restic and borg. It skips bin/backplane.js because src/cli/main.ts
 * loads the whole API server (Prisma, GraphQL) before dispatching, which would add seconds and
 * tens of MB that have nothing to do with the storage engine.
 */
import { repoMain } from '../src/cli/repo.ts';

process.exitCode = await repoMain(process.argv.slice(2));
