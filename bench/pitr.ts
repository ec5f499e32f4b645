/**
 * Point-in-time recovery benchmark (`npm run bench:pitr`; not a test): Backplane's PITR as a user
 * runs it (`backplane start` on a catalog, PITR enabled, base backups taken and a clone restored
 * to a time through the GraphQL API) next to pgBackRest on the same source cluster and the same
 * write load, in the same run.
 *
 * The source is a PostgreSQL 15 cluster of its own (fsync, synchronous_commit and
 * full_page_writes on, as a real server runs) with `archive_mode = on`; pgBackRest archives
 * through `archive_command` (wrapped to time each push), Backplane streams with pg_receivewal on
 * a slot. The load is pgbench at a fixed rate with a script whose every transaction also inserts
 * a row stamped with clock_timestamp(), so the newest commit anywhere is `max(stamped)`.
 *
 * Steps, in order:
 *   1. base backups: Backplane's first (taken when PITR is enabled), pgBackRest's full.
 *   2. steady load for BENCH_PITR_LOAD_S: the WAL rate it makes; each archiver's lag; how much
 *      each repository grew per GiB of that WAL, against `zstd -3` of the same segments.
 *   3. second base backups under the load: ours through createBaseBackup, pgBackRest's `incr`;
 *      each side every byte it stored: ours BaseBackup.addedBytes (packs whole, index, snapshot),
 *      pgBackRest the growth of the files under its backup/ (data files, backup.manifest and its
 *      copy, the history manifest, backup.info and its copy).
 *   4. archive throughput: with Backplane stopped, a burst of WAL; pgBackRest archives it as it
 *      comes (each push timed); then Backplane starts and catches up: its time to cover the burst.
 *   5. recovery to the time the steady load ended (the first base backup plus all its WAL): ours
 *      as a clone (restoreToPointInTime), pgBackRest's `restore --type=time` plus the server's
 *      replay until it is promoted.
 *   6. RPO: BENCH_PITR_CRASHES times, under the load, `pg_ctl stop -m immediate` at a random
 *      moment; the newest commit each side can recover (ours: the API's latestRecoveryTime;
 *      pgBackRest: the last commit record in its newest archived segment, read with pg_waldump)
 *      against the last commit the server made (read after it restarts).
 *
 * Settings: BENCH_PITR_SCALE (pgbench scale, default 20: ~300 MiB; 68 is ~1 GiB),
 * BENCH_PITR_LOAD_S (default 180; 900 for "15 minutes of WAL"), BENCH_PITR_TPS (default 150),
 * BENCH_PITR_ARCHIVE_S (our archive interval and pgBackRest's archive_timeout, default 5),
 * BENCH_PITR_BURST_MB (default 256), BENCH_PITR_CRASHES (default 5), BENCH_PITR_SEED (default 1),
 * BENCH_PITR_RECOVERIES (step 5's runs, default 1), BENCH_PITR_BASELINE_ROOT (another checkout,
 * built: step 5 then alternates a server from it and ours, for an A/B in the same run),
 * BENCH_KEEP=1 keeps the work folder. Results: a summary on stdout and bench/results/pitr.json.
 *
 * The source, pgBackRest, our server, the load, the first base backups and the recoveries are
 * bench/pitr-rig.ts' (shared with bench/pitr-scale.ts).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster } from '../src/db/pg-server.ts';
import { machineInfo } from './machine.ts';
import { GiB, log, loadavg, MiB, parseLsn, percentile, PG_BIN, pitrSettings, round, run, SEG, segmentName, sleep, stats, dirBytes, withPitrRig } from './pitr-rig.ts';
import { sql } from './snapshot-data.ts';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const { scale: SCALE, loadS: LOAD_S, tps: TPS, archiveS: ARCHIVE_S, recoveries: RECOVERIES } = pitrSettings({ scale: 20, loadS: 180, recoveries: 1 });
const BURST_MB = Number(process.env.BENCH_PITR_BURST_MB ?? 256);
const CRASHES = Number(process.env.BENCH_PITR_CRASHES ?? 5);
const BASELINE_ROOT = process.env.BENCH_PITR_BASELINE_ROOT || undefined;

/** A small seeded generator (mulberry32): the crash moments repeat from run to run. */
function seeded(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CREATE_BASE_BACKUP = `mutation($input: CreateBaseBackupInput!) { createBaseBackup(input: $input) {
  __typename ... on BaseBackupOperationPayload { operation { id } baseBackup { id } } ... on Error { code message } } }`;

async function main() {
  const started = new Date();
  const loadAtStart = loadavg();
  const rand = seeded(Number(process.env.BENCH_PITR_SEED ?? 1));
  log(`pgbench scale ${SCALE}, ${TPS} tps for ${LOAD_S} s, archive interval ${ARCHIVE_S} s, ${CRASHES} crashes`);
  await withPitrRig({ scale: SCALE, tps: TPS, archiveS: ARCHIVE_S, prefix: 'bp-pitr-bench-' }, async (rig) => {
    const { root, asPg, binaries, sourceSettings, src, srcAdmin, one, currentLsn, pgbrRepo, pgbackrest, pgbrInfo, pgbrBackupBytes, pushes, appUrl, dbBytes, clusterBytes, startLoad, stopLoad, db, repoPath, startOurs, api, envGid } = rig;
    const { pitrWindow, latestRecoverable, oursCovers, pgbrCovers, baseBackupRow, lsnEnable } = rig;

    // --- 1. first base backups (no load yet: each alone on the machine)
    const { ours: ourBase1, pgbr: pgbrBase1 } = await rig.firstBaseBackups();


    // --- 2. steady load
    await oursCovers(new Date());
    await pgbrCovers(await currentLsn());
    const repoBefore = { ours: await dirBytes(repoPath), pgbr: await dirBytes(path.join(pgbrRepo, 'archive')) };
    const ourParts = async () => Object.fromEntries(await Promise.all(['data', 'index', 'snapshots'].map(async (d) => [d, await dirBytes(path.join(repoPath, d))] as const)));
    const partsBefore = await ourParts();
    const uploadsBefore = await db.walUpload.count();
    const lsnLoadStart = await currentLsn();
    log(`steady load: ${TPS} tps for ${LOAD_S} s`);
    startLoad();
    const tLoadStart = Date.now();
    const lagSamples = { ours: [] as number[], pgbrBytes: [] as number[] };
    while (Date.now() - tLoadStart < LOAD_S * 1000) {
      await sleep(1000);
      const c = await db.pitrCluster.findFirst({ select: { coveredUntil: true } });
      if (c?.coveredUntil) lagSamples.ours.push((Date.now() - c.coveredUntil.getTime()) / 1000);
      // WAL written past the end of the newest segment pgBackRest holds.
      const a = await one<{ w: string | null; l: string }>(srcAdmin, 'SELECT last_archived_wal AS w, pg_current_wal_lsn()::text AS l FROM pg_stat_archiver');
      if (a.w && /^[0-9A-F]{24}$/.test(a.w)) {
        const end = (BigInt(`0x${a.w.slice(8, 16)}`) * 256n + BigInt(`0x${a.w.slice(16, 24)}`) + 1n) * BigInt(SEG);
        lagSamples.pgbrBytes.push(Math.max(0, Number(parseLsn(a.l) - end)));
      }
    }
    const tLoadEnd = new Date();
    const lsnLoadEnd = await currentLsn();
    const committedInLoad = Number((await one<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped >= $1', [new Date(tLoadStart)])).n);
    const walLoad = Number(lsnLoadEnd - lsnLoadStart);
    const walRate = walLoad / ((tLoadEnd.getTime() - tLoadStart) / 1000);
    log(`  ${(walLoad / MiB).toFixed(0)} MiB of WAL at ${(walRate / MiB).toFixed(2)} MiB/s, ${committedInLoad} commits`);

    // --- 3. second base backups, under the load
    log('second base backups (under the load)');
    // Both archives reach the end of the steady load first: the repository growth is the load's WAL.
    await oursCovers(tLoadEnd);
    await pgbrCovers(lsnLoadEnd);
    const repoAfter = { ours: await dirBytes(repoPath), pgbr: await dirBytes(path.join(pgbrRepo, 'archive')) };
    const partsAfter = await ourParts();
    const loadUploads = (await db.walUpload.findMany({ orderBy: { createdAt: 'asc' }, skip: uploadsBefore })).filter((u) => u.createdAt.getTime() >= tLoadStart);
    const ourBreakdown = {
      uploads: loadUploads.length,
      uploadsWithPartial: loadUploads.filter((u) => u.files.some((f) => f.endsWith('.partial'))).length,
      addedMiB: round(loadUploads.reduce((a, u) => a + Number(u.addedBytes), 0) / MiB, 1),
      dataMiB: round((partsAfter.data - partsBefore.data) / MiB, 1),
      indexMiB: round((partsAfter.index - partsBefore.index) / MiB, 2),
      snapshotsMiB: round((partsAfter.snapshots - partsBefore.snapshots) / MiB, 2),
    };
    const second = await api<{ createBaseBackup: { __typename: string; operation?: { id: string }; baseBackup?: { id: string } } }>(CREATE_BASE_BACKUP, { input: { environmentId: envGid } });
    if (!second.createBaseBackup.baseBackup) throw new Error(`createBaseBackup: ${JSON.stringify(second.createBaseBackup)}`);
    // BaseBackup is not a Node: its id is the catalog's own.
    const secondBase = await baseBackupRow(second.createBaseBackup.baseBackup.id);
    if (secondBase.status !== 'READY') throw new Error(`our second base backup: ${secondBase.status} ${secondBase.error}`);
    const ourBase2 = { sizeBytes: Number(secondBase.sizeBytes), addedBytes: Number(secondBase.addedBytes), seconds: (secondBase.finishedAt!.getTime() - secondBase.startedAt.getTime()) / 1000 };
    log(`  ours: ${(ourBase2.addedBytes / MiB).toFixed(1)} MiB added in ${ourBase2.seconds.toFixed(1)} s`);
    const pgbrBytes1 = pgbrBackupBytes();
    const pgbrIncr = await pgbackrest(['backup', '--type=incr']);
    const incr = (await pgbrInfo()).at(-1)!;
    const pgbrBase2 = { sizeBytes: incr.info.size, addedBytes: pgbrBackupBytes() - pgbrBytes1, dataFilesBytes: incr.info.repository.delta, seconds: round(pgbrIncr.seconds), type: incr.type };
    log(`  pgBackRest ${incr.type}: ${(pgbrBase2.addedBytes / MiB).toFixed(1)} MiB stored (${(pgbrBase2.dataFilesBytes / MiB).toFixed(1)} MiB of it data files) in ${pgbrBase2.seconds} s`);
    await stopLoad();

    // zstd -3 of the segments the steady load wrote (from the one after the switch before it to
    // the one the switch after it closed), decompressed from pgBackRest's copies; both
    // repositories archived exactly these in the phase (ours also its partial copies).
    let zstdBytes = 0;
    let zstdSegments = 0;
    const archiveDir = path.join(pgbrRepo, 'archive', 'bench');
    const firstLoadSeg = segmentName(1, lsnLoadStart);
    const lastLoadSeg = segmentName(1, lsnLoadEnd);
    const stored = (await run('find', [archiveDir, '-type', 'f', '-name', '*.zst'])).stdout.split('\n').filter(Boolean);
    for (const file of stored) {
      const name = path.basename(file).slice(0, 24);
      if (!/^[0-9A-F]{24}$/.test(name) || name < firstLoadSeg || name > lastLoadSeg) continue;
      const r = await run('sh', ['-c', `zstd -d -q -c '${file}' | zstd -3 -q -c | wc -c`]);
      zstdBytes += Number(r.stdout.trim());
      zstdSegments++;
    }

    // --- 4. archive throughput: a burst of WAL while Backplane is stopped, then its catch-up
    log(`archive throughput: a burst of ~${BURST_MB} MiB of WAL`);
    await oursCovers(new Date());
    await rig.stopOurs();
    const pushesBeforeBurst = (await pushes()).length;
    const lsnBurst0 = await currentLsn();
    const tBurst0 = Date.now();
    // Rows of ~1 KiB incompressible-ish text; WAL is about the heap bytes plus index entries.
    await sql(appUrl, `CREATE TABLE burst AS SELECT g AS id, repeat(md5(g::text), 30) AS body FROM generate_series(1, ${Math.round((BURST_MB * MiB) / 1100)}) g`);
    const tBurst1 = new Date();
    const lsnBurst1 = await currentLsn();
    const burstWal = Number(lsnBurst1 - lsnBurst0);
    const tPgbrDone = await pgbrCovers(lsnBurst1);
    const burstPushes = (await pushes()).slice(pushesBeforeBurst).filter((p) => p.ok);
    const pushSeconds = burstPushes.reduce((s, p) => s + (p.end - p.start), 0);
    const pushBytes = burstPushes.reduce((s, p) => s + p.bytes, 0);
    log(`  ${(burstWal / MiB).toFixed(0)} MiB of WAL in ${((tBurst1.getTime() - tBurst0) / 1000).toFixed(1)} s; pgBackRest covered it ${((tPgbrDone.getTime() - tBurst1.getTime()) / 1000).toFixed(1)} s after, ${burstPushes.length} pushes taking ${pushSeconds.toFixed(1)} s`);
    const tOursStart = Date.now();
    await startOurs();
    const tOursReady = Date.now();
    const tOursDone = await oursCovers(tBurst1);
    const oursCatchUp = (tOursDone.getTime() - tOursReady) / 1000;
    log(`  ours: started in ${((tOursReady - tOursStart) / 1000).toFixed(1)} s, covered the burst ${oursCatchUp.toFixed(1)} s after it was ready`);
    await sql(appUrl, 'DROP TABLE burst');

    // --- 5. recovery to the end of the steady load: the first base backups plus all its WAL
    const target = tLoadEnd;
    const expectedRows = Number((await one<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped <= $1', [target])).n);
    log(`recovery to ${target.toISOString()} (${expectedRows} stamped rows by then)`);
    // Each run from a server of its own (the build under test, or BENCH_PITR_BASELINE_ROOT's),
    // alternating baseline and ours, so both meet the same machine state on a shared machine.
    const ourRuns: Awaited<ReturnType<typeof rig.recoverOurs>>[] = [];
    const baselineRuns: Awaited<ReturnType<typeof rig.recoverOurs>>[] = [];
    const instanceRuns: Awaited<ReturnType<typeof rig.recoverOursInstance>>[] = [];
    for (let i = 0; i < RECOVERIES; i++) {
      for (const which of BASELINE_ROOT ? (['baseline', 'ours'] as const) : (['ours'] as const)) {
        if (BASELINE_ROOT) {
          await rig.stopOurs();
          await startOurs(which === 'baseline' ? BASELINE_ROOT : undefined);
        }
        const r = await rig.recoverOurs(target);
        // Rows are stamped before their commit: under load one stamped by the time may commit after
        // it, and no recovery to the time holds it. Compared across runs (and with pgBackRest's) instead.
        if (r.rows !== expectedRows) log(`  (${r.rows} stamped rows, ${expectedRows} stamped by the time)`);
        (which === 'ours' ? ourRuns : baselineRuns).push(r);
        log(`  ${which}: ${r.seconds} s (replayed after ${r.untilReplayedSeconds} s), ${r.rows} rows; phases ${JSON.stringify(r.phases)}; load ${r.loadAverage[0]}`);
        if (which === 'ours') {
          // The whole cluster at the time, read-only, kept (what pgBackRest's restore gives), right after the clone.
          const n = await rig.recoverOursInstance(target);
          instanceRuns.push(n);
          log(`  ours, instance: READY after ${n.seconds} s, ${n.rows} rows; phases ${JSON.stringify(n.phases)}; load ${n.loadAverage[0]}`);
        }
      }
    }
    const oursInstance = { seconds: stats(instanceRuns.map((r) => r.seconds)).median, secondsStats: stats(instanceRuns.map((r) => r.seconds)), rows: instanceRuns[0].rows, runs: instanceRuns };
    const ourRecovery = {
      seconds: stats(ourRuns.map((r) => r.seconds)).median,
      untilReplayedSeconds: stats(ourRuns.map((r) => r.untilReplayedSeconds ?? NaN)).median,
      rows: ourRuns[0].rows,
      secondsStats: stats(ourRuns.map((r) => r.seconds)),
      untilReplayedStats: stats(ourRuns.map((r) => r.untilReplayedSeconds ?? NaN)),
      runs: ourRuns,
      ...(baselineRuns.length
        ? { baseline: { root: BASELINE_ROOT, secondsStats: stats(baselineRuns.map((r) => r.seconds)), untilReplayedStats: stats(baselineRuns.map((r) => r.untilReplayedSeconds ?? NaN)), runs: baselineRuns } }
        : {}),
    };
    if (BASELINE_ROOT) log(`  medians: ours ${ourRecovery.secondsStats.median} s (${ourRecovery.secondsStats.min}-${ourRecovery.secondsStats.max}), baseline ${ourRecovery.baseline!.secondsStats.median} s (${ourRecovery.baseline!.secondsStats.min}-${ourRecovery.baseline!.secondsStats.max})`);

    const pgbrRuns: Awaited<ReturnType<typeof rig.recoverPgbr>>[] = [];
    for (let i = 0; i < RECOVERIES; i++) {
      const r = await rig.recoverPgbr(target);
      log(`  pgBackRest: ${r.seconds} s (restore ${r.restoreCommandSeconds} s, then replay), ${r.rows} rows; load ${r.loadAverage[0]}`);
      pgbrRuns.push(r);
    }
    const pgbrRecovery = { seconds: stats(pgbrRuns.map((r) => r.seconds)).median, secondsStats: stats(pgbrRuns.map((r) => r.seconds)), rows: pgbrRuns[0].rows, runs: pgbrRuns };
    const rowCounts = [...new Set([...ourRuns, ...baselineRuns, ...instanceRuns, ...pgbrRuns].map((r) => r.rows))];
    if (rowCounts.length > 1) log(`  the recoveries disagree: ${rowCounts.join(', ')} rows`);


    // --- 6. RPO: crash the source at random moments under the load
    log(`RPO: ${CRASHES} crashes under the load`);
    const crashes: { crashedAt: string; lastCommit: string; ours: { newestRecoverable: string | null; rpoSeconds: number | null }; pgbackrest: { lastArchivedSegment: string | null; newestRecoverable: string | null; rpoSeconds: number | null } }[] = [];
    const tempWal = path.join(root, 'waldump');
    await fs.mkdir(tempWal);
    for (let i = 0; i < CRASHES; i++) {
      startLoad();
      // Both archives are live again before the random moment.
      await sleep(1000);
      await oursCovers(new Date(), 120_000);
      const wait = ARCHIVE_S * 1000 * (1 + 2 * rand());
      await sleep(wait);
      const crashedAt = new Date();
      await run(path.join(PG_BIN, 'pg_ctl'), ['stop', '-D', src.dataDir, '-m', 'immediate', '-w'], { ...asPg });
      await stopLoad();
      // Whatever either side would still manage to send has had its chance.
      await sleep(Math.max(10_000, 2 * ARCHIVE_S * 1000));
      const oursLatest = await latestRecoverable();
      // pgBackRest: the newest segment in its archive, and the last commit record in it.
      const files = (await run('find', [archiveDir, '-type', 'f', '-name', '*.zst'])).stdout.split('\n').filter((f) => /\/[0-9A-F]{24}-[0-9a-f]{40}\.zst$/.test(f)).sort((a, b) => path.basename(a).localeCompare(path.basename(b)));
      let pgbrLastCommit: Date | null = null;
      let lastSeg: string | null = null;
      // The newest segments may hold no commit (a checkpoint, a switch): look back a few.
      for (const f of files.slice(-4).reverse()) {
        lastSeg ??= path.basename(f).slice(0, 24);
        const plain = path.join(tempWal, path.basename(f).slice(0, 24));
        await run('sh', ['-c', `zstd -d -q -f -o '${plain}' '${f}'`]);
        const dump = await run(path.join(PG_BIN, 'pg_waldump'), [plain], { allowFail: true });
        await fs.rm(plain, { force: true });
        const commits = [...dump.stdout.matchAll(/desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC/g)];
        if (commits.length) {
          pgbrLastCommit = new Date(`${commits.at(-1)![1].replace(' ', 'T')}Z`);
          break;
        }
      }
      // Back up (crash recovery of the local WAL): every acknowledged commit is there again.
      await startCluster({ dataDir: src.dataDir, port: src.port, password: src.password, binaries, settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 300, ...sourceSettings } });
      const last = new Date((await one<{ t: Date }>(appUrl, 'SELECT max(stamped) AS t FROM pitr_rows')).t);
      const newestBy = async (t: Date | null) => (t ? ((await one<{ t: Date | null }>(appUrl, 'SELECT max(stamped) AS t FROM pitr_rows WHERE stamped <= $1', [t])).t ?? null) : null);
      const oursNewest = await newestBy(oursLatest);
      const pgbrNewest = await newestBy(pgbrLastCommit);
      const rpo = (n: Date | null) => (n ? round((last.getTime() - new Date(n).getTime()) / 1000) : null);
      crashes.push({
        crashedAt: crashedAt.toISOString(),
        lastCommit: last.toISOString(),
        ours: { newestRecoverable: oursNewest ? new Date(oursNewest).toISOString() : null, rpoSeconds: rpo(oursNewest) },
        pgbackrest: { lastArchivedSegment: lastSeg, newestRecoverable: pgbrNewest ? new Date(pgbrNewest).toISOString() : null, rpoSeconds: rpo(pgbrNewest) },
      });
      log(`  crash ${i + 1}: RPO ours ${rpo(oursNewest)} s, pgBackRest ${rpo(pgbrNewest)} s`);
    }
    await stopLoad();
    await oursCovers(new Date(), 120_000);
    await pgbrCovers(await currentLsn());

    const window = await pitrWindow();
    const totals = { ours: await dirBytes(repoPath), pgbr: await dirBytes(pgbrRepo) };
    const loadAtEnd = loadavg();
    const ourWalGrowth = repoAfter.ours - repoBefore.ours;
    const pgbrWalGrowth = repoAfter.pgbr - repoBefore.pgbr;
    const perGiB = (b: number) => round((b / walLoad) * GiB / MiB, 1);
    const result = {
      bench: 'pitr',
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: machineInfo({ postgres: [path.join(PG_BIN, 'postgres'), ['--version']], zstd: ['zstd', ['--version']] }),
      loadAverage: { start: loadAtStart, end: loadAtEnd },
      settings: { pgbenchScale: SCALE, loadSeconds: LOAD_S, tps: TPS, archiveIntervalSeconds: ARCHIVE_S, burstMiB: BURST_MB, crashes: CRASHES, seed: Number(process.env.BENCH_PITR_SEED ?? 1) },
      source: { appDatabaseMiB: round(dbBytes / MiB, 1), clusterMiB: round(clusterBytes / MiB, 1), settings: 'fsync, synchronous_commit, full_page_writes on; archive_mode on, archive_timeout = the archive interval' },
      pgbackrest: { version: (await run('pgbackrest', ['version'])).stdout.trim(), config: 'compress-type=zst, compress-level=3, process-max = cores, archive_command (synchronous archive-push), backups with start-fast' },
      rpo: {
        note: 'newest recoverable commit: ours = the newest stamped row at or before the API\'s latestRecoveryTime read after the crash; pgBackRest = the newest stamped row at or before the last COMMIT record (pg_waldump) in its newest archived segments. Last commit = max(stamped) after the server restarted.',
        oursSeconds: stats(crashes.map((c) => c.ours.rpoSeconds ?? NaN).filter((x) => !Number.isNaN(x))),
        pgbackrestSeconds: stats(crashes.map((c) => c.pgbackrest.rpoSeconds ?? NaN).filter((x) => !Number.isNaN(x))),
        crashes,
      },
      steadyLoad: {
        seconds: round((tLoadEnd.getTime() - tLoadStart) / 1000, 1),
        commits: committedInLoad,
        walMiB: round(walLoad / MiB, 1),
        walRateMiBs: round(walRate / MiB, 3),
        oursLagSeconds: { median: percentile(lagSamples.ours, 50), p95: percentile(lagSamples.ours, 95), max: percentile(lagSamples.ours, 100) },
        pgbackrestBehindMiB: { median: round(percentile(lagSamples.pgbrBytes, 50) / MiB, 1), p95: round(percentile(lagSamples.pgbrBytes, 95) / MiB, 1), max: round(percentile(lagSamples.pgbrBytes, 100) / MiB, 1) },
      },
      archiveThroughput: {
        burstWalMiB: round(burstWal / MiB, 1),
        burstGeneratedMiBs: round(burstWal / MiB / ((tBurst1.getTime() - tBurst0) / 1000), 1),
        oursCatchUpSeconds: round(oursCatchUp, 1),
        oursMiBs: round(burstWal / MiB / oursCatchUp, 1),
        oursStartSeconds: round((tOursReady - tOursStart) / 1000, 1),
        pgbackrestPushes: burstPushes.length,
        pgbackrestPushSecondsMedian: stats(burstPushes.map((p) => p.end - p.start)).median,
        pgbackrestMiBs: round(pushBytes / MiB / pushSeconds, 1),
        pgbackrestCoveredAfterBurstSeconds: round((tPgbrDone.getTime() - tBurst1.getTime()) / 1000, 1),
        note: 'ours: Backplane stopped during the burst, then started; MiB/s = the burst\'s WAL over the time from the server being ready to the API\'s window passing the burst. pgBackRest: segments pushed while the burst ran, MiB/s = segment bytes over the summed archive-push times (archive_command runs one at a time).',
      },
      repositoryPerGiBOfWal: {
        walMiB: round(walLoad / MiB, 1),
        oursMiB: perGiB(ourWalGrowth),
        pgbackrestMiB: perGiB(pgbrWalGrowth),
        zstd3MiB: perGiB(zstdBytes),
        note: 'growth of our repository and of pgBackRest\'s archive/ folder while the steady load ran, and zstd -3 of the segments it filled, each per GiB of WAL the load wrote (LSN difference)',
        segments: zstdSegments,
        oursBreakdown: ourBreakdown,
      },
      baseBackups: {
        ours: { first: ourBase1, second: ourBase2 },
        pgbackrest: { full: pgbrBase1, second: pgbrBase2 },
        secondOverFirst: { ours: round(ourBase2.addedBytes / ourBase1.addedBytes, 3), pgbackrest: round(pgbrBase2.addedBytes / pgbrBase1.addedBytes, 3) },
      },
      recovery: {
        targetTime: target.toISOString(),
        expectedRows,
        rowCountsSeen: rowCounts,
        walToReplayMiB: round(Number(lsnLoadEnd - lsnEnable) / MiB, 1),
        ours: ourRecovery,
        oursInstance,
        pgbackrest: pgbrRecovery,
        note: 'ours: restoreToPointInTime as a clone, from the mutation to the operation\'s finish (fetching the base, replaying in a temporary instance, moving the one database into a new database); untilReplayedSeconds ends when moving-database starts. oursInstance: openRecoveryInstance, from the mutation until READY (the whole cluster at the time, read-only, on a TCP port), run right after each clone and closed after counting. pgBackRest: restore --type=time of the whole cluster plus PostgreSQL\'s replay until promoted.',
      },
      repositoryTotalMiB: { ours: round(totals.ours / MiB, 1), pgbackrest: round(totals.pgbr / MiB, 1) },
      window: { earliest: window.earliestRecoveryTime, latest: window.latestRecoveryTime, gaps: window.gaps.length },
      note: SCALE < 68 || LOAD_S < 900 ? `smaller than the issue's "1 GiB plus 15 minutes of WAL": ${round(dbBytes / MiB)} MiB database, ${LOAD_S} s of load` : 'at the issue\'s scale',
    };
    await fs.mkdir(path.join(BENCH, 'results'), { recursive: true });
    await fs.writeFile(path.join(BENCH, 'results', 'pitr.json'), `${JSON.stringify(result, null, 2)}\n`);
    log(`RPO median ours ${result.rpo.oursSeconds.median} s (${result.rpo.oursSeconds.min}-${result.rpo.oursSeconds.max}), pgBackRest ${result.rpo.pgbackrestSeconds.median} s (${result.rpo.pgbackrestSeconds.min}-${result.rpo.pgbackrestSeconds.max})`);
    log(`repository per GiB of WAL: ours ${result.repositoryPerGiBOfWal.oursMiB} MiB, pgBackRest ${result.repositoryPerGiBOfWal.pgbackrestMiB} MiB, zstd -3 ${result.repositoryPerGiBOfWal.zstd3MiB} MiB`);
    log(`second base backup added: ours ${ourBase2.addedBytes.toLocaleString('en')} bytes, pgBackRest ${pgbrBase2.type} ${pgbrBase2.addedBytes.toLocaleString('en')} (${(100 * (ourBase2.addedBytes / pgbrBase2.addedBytes - 1)).toFixed(1)} %)`);
    log(`recovery: ours ${ourRecovery.seconds} s (replayed at ${ourRecovery.untilReplayedSeconds} s), ours as an instance ${oursInstance.seconds} s, pgBackRest ${pgbrRecovery.seconds} s`);
    log(`repositories: ours ${result.repositoryTotalMiB.ours} MiB, pgBackRest ${result.repositoryTotalMiB.pgbackrest} MiB; load average ${loadAtStart.join(' ')} -> ${loadAtEnd.join(' ')}`);
    log('wrote bench/results/pitr.json');
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
