/**
 * `npm run chaos`: the chaos run of bench/chaos-run.ts on a database of a few hundred MB plus
 * files, in a scratch PostgreSQL of its own under bench/work/. Settings: CHAOS_KILLS (20),
 * CHAOS_SEED (1), CHAOS_DB_MB (250), CHAOS_FILES_MB (50), CHAOS_MAX_MINUTES (75: no round
 * starts after that). Prints each round; writes bench/results/chaos.json. Exits 1 when
 * anything was left behind or did not restore.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Logger, runMigrations as installWorkerSchema } from 'graphile-worker';
import { applyMigrations } from '../src/db/migrate.ts';
import { createDatabase, startScratchPostgres, type ScratchPostgres } from '../src/db/pg-server.ts';
import { runChaos } from './chaos-run.ts';
import { generateDatabase, generateFiles } from './snapshot-data.ts';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const num = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const KILLS = num('CHAOS_KILLS', 20);
const SEED = num('CHAOS_SEED', 1);
const DB_MB = num('CHAOS_DB_MB', 250);
const FILES_MB = num('CHAOS_FILES_MB', 50);
const MAX_MINUTES = num('CHAOS_MAX_MINUTES', 75);

const log = (msg: string) => process.stdout.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

async function main() {
  await fs.mkdir(path.join(BENCH, 'work'), { recursive: true });
  const work = await fs.mkdtemp(path.join(BENCH, 'work', 'chaos-'));
  let server: ScratchPostgres | undefined;
  try {
    log(`work dir ${work}; ${KILLS} kills, seed ${SEED}, database ${DB_MB} MiB, files ${FILES_MB} MiB`);
    server = await startScratchPostgres({ tmpRoot: work });
    await createDatabase(server.adminUrl, 'backplane');
    const catalogUrl = server.url('backplane');
    await applyMigrations(catalogUrl);
    await installWorkerSchema({ connectionString: catalogUrl, logger: new Logger(() => () => {}) });
    await createDatabase(server.adminUrl, 'shop');
    const envUrl = server.url('shop');
    const generated = await generateDatabase(envUrl, DB_MB, log);
    const filesPath = path.join(work, 'env', 'files');
    await fs.mkdir(filesPath, { recursive: true });
    const files = await generateFiles(filesPath, FILES_MB);
    log(`database ${(generated.bytes / 2 ** 20).toFixed(0)} MiB, files ${files.files} files ${(files.bytes / 2 ** 20).toFixed(0)} MiB`);

    const result = await runChaos({ catalogUrl, envUrl, filesPath, workDir: work, kills: KILLS, seed: SEED, deadlineMs: MAX_MINUTES * 60_000, log });
    const out = {
      date: new Date().toISOString(),
      dataset: { databaseMiB: Math.round(generated.bytes / 2 ** 20), filesMiB: Math.round(files.bytes / 2 ** 20), files: files.files },
      ...result,
    };
    await fs.mkdir(path.join(BENCH, 'results'), { recursive: true });
    await fs.writeFile(path.join(BENCH, 'results', 'chaos.json'), JSON.stringify(out, null, 2) + '\n');
    log(`kills ${result.kills}/${result.killsRequested} in ${result.rounds} rounds, ${result.seconds} s; phases hit ${JSON.stringify(result.phasesHit)}`);
    log(`recoveries ${JSON.stringify(result.recoveries)}; leftovers ${JSON.stringify(result.leftovers)}; READY snapshots restored ${result.readySnapshotsVerified}, unrestorable ${result.unrestorableReadySnapshots}; restic check failures ${result.resticCheckFailures}`);
    for (const p of result.problems) log(`PROBLEM ${p}`);
    const bad = result.problems.length > 0 || result.kills < result.killsRequested;
    if (bad) process.exitCode = 1;
  } finally {
    await server?.stop().catch(() => undefined);
    if (!process.env.CHAOS_KEEP) await fs.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
