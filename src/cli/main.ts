/**
 * The `backplane` command. `repo` (the storage engine's command line) loads only the engine;
 * the client commands (`snapshot`, `operation`: src/cli/client) only a GraphQL client; the
 * control-plane commands load the server modules. Keeping them apart makes `backplane repo`
 * start fast and work even without a database or a generated Prisma client.
 */
import { isMainThread } from 'node:worker_threads';

const [command, ...rest] = process.argv.slice(2);

async function main(): Promise<void> {
  if (!isMainThread) {
    // `backplane start` runs its jobs on a thread started from this same entry (app/job-host.ts).
    const host = await import('../app/job-host.ts');
    if (host.isJobThread()) return host.runJobThread();
  }
  if (command === 'repo') {
    const { repoMain } = await import('./repo.ts');
    process.exitCode = await repoMain(rest);
    return;
  }
  if (command === 'snapshot' || command === 'operation' || command === 'import') {
    const { clientMain } = await import('./client/main.ts');
    process.exitCode = await clientMain(process.argv.slice(2));
    return;
  }
  // Before the server's modules load: their start-up would grow the young generation for good.
  if (command === 'start' || command === 'serve' || command === 'worker') (await import('../app/young-generation.ts')).holdYoungGeneration();
  const { serverMain, USAGE } = await import('./server.ts');
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    const { CLIENT_USAGE } = await import('./client/main.ts');
    process.stdout.write(`${USAGE}\n${CLIENT_USAGE}`);
    return;
  }
  await serverMain(process.argv.slice(2));
}

main().catch((err: Error) => {
  const usage = err.name === 'UsageError' || err.name === 'ConfigError';
  process.stderr.write(`backplane: ${usage ? err.message : (err.stack ?? String(err))}\n`);
  process.exit(usage ? 2 : 1);
});
