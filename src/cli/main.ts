/**
 * The `backplane` command. `repo` (the storage engine's command line) loads only the engine;
 * the control-plane commands load the server modules. Keeping them apart makes `backplane repo`
 * start fast and work even without a database or a generated Prisma client.
 */
const [command, ...rest] = process.argv.slice(2);

async function main(): Promise<void> {
  if (command === 'repo') {
    const { repoMain } = await import('./repo.ts');
    process.exitCode = await repoMain(rest);
    return;
  }
  const { serverMain, USAGE } = await import('./server.ts');
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  await serverMain(process.argv.slice(2));
}

main().catch((err: Error) => {
  const usage = err.name === 'UsageError' || err.name === 'ConfigError';
  process.stderr.write(`backplane: ${usage ? err.message : (err.stack ?? String(err))}\n`);
  process.exit(usage ? 2 : 1);
});
