/**
 * `backplane repo` on its own: `node --import tsx src/cli/repo-entry.ts <command> …` runs the
 * same code as `backplane repo …` without first loading what the other commands need (the API
 * server, Prisma, the GraphQL schema). The benchmark uses it so that peak memory and start-up
 * are the engine's, and most CLI tests use it so that they test this command, not whether every
 * module of the server loads at that moment.
 */
import { repoMain } from './repo.ts';

process.exitCode = await repoMain(process.argv.slice(2));
