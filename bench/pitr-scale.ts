/**
 * Recovery at scale (`npm run bench:pitr-scale`; not a test): the time to recover a ~1 GiB
 * database plus 15 minutes of WAL to a time, Backplane's restoreToPointInTime (as a clone, over
 * GraphQL) beside pgBackRest's `restore --type=time` plus replay, on the source cluster, load and
 * archiving of `bench:pitr` (bench/pitr-rig.ts).
 *
 * Steps:
 *   1. pgbench -i at BENCH_PITR_SCALE (default 68: ~1 GiB) plus the stamped-rows table; the first
 *      base backup of each tool (ours taken when PITR is enabled, pgBackRest's full).
 *   2. a steady write load for BENCH_PITR_LOAD_S (default 900) at BENCH_PITR_TPS (default 150),
 *      archived by both; the recovery time is taken BENCH_PITR_TARGET_BEFORE_END_S (default 10)
 *      before the load ends, so commits follow it in the WAL and replay stops at it.
 *   3. once both archives hold the end of the load: BENCH_PITR_RECOVERIES (default 3) recoveries
 *      to that time per tool, interleaved (ours, pgBackRest, ours, ...), so both meet the same
 *      machine state. Each is checked: no row stamped after the time, every row stamped 2 s
 *      before it present (a row is stamped just before its transaction commits).
 *
 * Output: progress lines, a summary (medians with min-max, our phases, WAL generated, database
 * size, load average at start and end, the least free disk seen) and bench/results/pitr-scale.json.
 * BENCH_KEEP=1 keeps the work folder. Exits non-zero when a recovery was not exact.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo } from './machine.ts';
import { dirBytes, log, loadavg, MiB, PG_BIN, pitrSettings, round, run, sleep, stats, withPitrRig, type PitrRig } from './pitr-rig.ts';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const { scale: SCALE, loadS: LOAD_S, tps: TPS, archiveS: ARCHIVE_S, recoveries: RECOVERIES } = pitrSettings({ scale: 68, loadS: 900, recoveries: 3 });
const BEFORE_END_S = Number(process.env.BENCH_PITR_TARGET_BEFORE_END_S ?? 10);
const PROGRESS_S = 30;

type OurRun = Awaited<ReturnType<PitrRig['recoverOurs']>>;

/** Each phase's own duration in one of our runs (its start to the next phase's start, the last to the end). */
function phaseSeconds(r: OurRun): Record<string, number> {
  // `done` is polled after the operation finished: not a phase of work.
  const starts = Object.entries(r.phases)
    .filter(([name]) => name !== 'done')
    .sort((a, b) => a[1] - b[1]);
  return Object.fromEntries(starts.map(([name, at], i) => [name, round((starts[i + 1]?.[1] ?? r.seconds) - at)]));
}

/** The least free space on the work folder's file system, sampled every 2 s until stopped. */
function watchFreeDisk(dir: string) {
  let least = Infinity;
  const sample = () =>
    fs.statfs(dir).then(
      (s) => (least = Math.min(least, s.bavail * s.bsize)),
      () => undefined,
    );
  const timer = setInterval(sample, 2000);
  timer.unref();
  void sample();
  return { leastMiB: () => round(least / MiB, 0), stop: () => clearInterval(timer) };
}

async function main() {
  const started = new Date();
  const loadAtStart = loadavg();
  log(`pitr-scale: pgbench scale ${SCALE}, ${TPS} tps for ${LOAD_S} s, archive interval ${ARCHIVE_S} s, ${RECOVERIES} recoveries per tool; load average ${loadAtStart.join(' ')}`);
  const allExact = await withPitrRig({ scale: SCALE, tps: TPS, archiveS: ARCHIVE_S, prefix: 'bp-pitr-scale-' }, async (rig) => {
    const disk = watchFreeDisk(rig.root);
    try {
      const base = await rig.firstBaseBackups();

      // --- 2. the steady load, both archives live before it starts
      await rig.oursCovers(new Date());
      await rig.pgbrCovers(await rig.currentLsn());
      const repoBefore = { ours: await dirBytes(rig.repoPath), pgbr: await dirBytes(rig.pgbrRepo) };
      const lsnLoadStart = await rig.currentLsn();
      log(`steady load: ${TPS} tps for ${LOAD_S} s`);
      rig.startLoad();
      const tLoadStart = Date.now();
      let target: Date | undefined;
      let lsnTarget = 0n;
      let nextProgress = tLoadStart + PROGRESS_S * 1000;
      for (;;) {
        const now = Date.now();
        if (now - tLoadStart >= LOAD_S * 1000) break;
        if (!target && now - tLoadStart >= (LOAD_S - BEFORE_END_S) * 1000) {
          target = new Date();
          lsnTarget = await rig.currentLsn();
        }
        if (now >= nextProgress) {
          nextProgress += PROGRESS_S * 1000;
          const wal = Number((await rig.currentLsn()) - lsnLoadStart);
          const latest = await rig.latestRecoverable();
          const archived = await rig.one<{ w: string | null }>(rig.srcAdmin, 'SELECT last_archived_wal AS w FROM pg_stat_archiver');
          log(`  ${Math.round((now - tLoadStart) / 1000)} s: ${(wal / MiB).toFixed(0)} MiB of WAL; ours covers until ${latest ? `${round((now - latest.getTime()) / 1000, 1)} s ago` : 'nothing'}; pgBackRest archived ${archived.w}; load ${loadavg()[0]}; least free disk ${disk.leastMiB()} MiB`);
        }
        await sleep(Math.min(1000, Math.max(10, nextProgress - Date.now())));
      }
      target ??= new Date();
      lsnTarget ||= await rig.currentLsn();
      await rig.stopLoad();
      const tLoadEnd = new Date();
      const lsnLoadEnd = await rig.currentLsn();
      const walLoad = Number(lsnLoadEnd - lsnLoadStart);
      const loadSeconds = (tLoadEnd.getTime() - tLoadStart) / 1000;
      const commits = Number((await rig.one<{ n: string }>(rig.appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped >= $1', [new Date(tLoadStart)])).n);
      log(`  ${(walLoad / MiB).toFixed(0)} MiB of WAL at ${(walLoad / MiB / loadSeconds).toFixed(2)} MiB/s, ${commits} commits`);
      const coveredOurs = await rig.oursCovers(tLoadEnd);
      const coveredPgbr = await rig.pgbrCovers(lsnLoadEnd);
      const catchUp = { oursSeconds: round((coveredOurs.getTime() - tLoadEnd.getTime()) / 1000, 1), pgbackrestSeconds: round((coveredPgbr.getTime() - tLoadEnd.getTime()) / 1000, 1) };
      log(`  archives hold the end of the load: ours ${catchUp.oursSeconds} s after it, pgBackRest ${catchUp.pgbackrestSeconds} s`);
      const repoAfter = { ours: await dirBytes(rig.repoPath), pgbr: await dirBytes(rig.pgbrRepo) };
      const dbBytesAtEnd = Number((await rig.one<{ n: string }>(rig.appUrl, "SELECT pg_database_size('app') AS n")).n);
      const workDirMiB = round((await dirBytes(rig.root)) / MiB, 0);

      // --- 3. recoveries to the time, interleaved
      const stampedByTarget = Number((await rig.one<{ n: string }>(rig.appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped <= $1', [target])).n);
      const walToReplay = Number(lsnTarget - rig.lsnEnable);
      log(`recovery to ${target.toISOString()} (${stampedByTarget} rows stamped by then; ~${(walToReplay / MiB).toFixed(0)} MiB of WAL after our base backup began)`);
      const ourRuns: OurRun[] = [];
      const pgbrRuns: Awaited<ReturnType<PitrRig['recoverPgbr']>>[] = [];
      const instanceRuns: Awaited<ReturnType<PitrRig['recoverOursInstance']>>[] = [];
      for (let i = 0; i < RECOVERIES; i++) {
        const o = await rig.recoverOurs(target);
        ourRuns.push(o);
        log(`  ours ${i + 1}/${RECOVERIES}: ${o.seconds} s (replayed after ${o.untilReplayedSeconds} s), ${o.rows} rows, ${o.exact ? 'exact' : `NOT EXACT (newest ${o.maxStamped}, ${o.rowsBeforeMargin}/${o.expectedBeforeMargin} rows before the margin)`}; phases ${JSON.stringify(phaseSeconds(o))}; load ${o.loadAverage[0]}`);
        const n = await rig.recoverOursInstance(target);
        instanceRuns.push(n);
        log(`  ours, instance ${i + 1}/${RECOVERIES}: READY after ${n.seconds} s, ${n.rows} rows, ${n.exact ? 'exact' : `NOT EXACT (newest ${n.maxStamped}, ${n.rowsBeforeMargin}/${n.expectedBeforeMargin} rows before the margin)`}; phases ${JSON.stringify(n.phases)}; load ${n.loadAverage[0]}`);
        const p = await rig.recoverPgbr(target);
        pgbrRuns.push(p);
        log(`  pgBackRest ${i + 1}/${RECOVERIES}: ${p.seconds} s (restore ${p.restoreCommandSeconds} s, then replay), ${p.rows} rows, ${p.exact ? 'exact' : `NOT EXACT (newest ${p.maxStamped}, ${p.rowsBeforeMargin}/${p.expectedBeforeMargin} rows before the margin)`}; load ${p.loadAverage[0]}`);
      }
      const exact = [...ourRuns, ...instanceRuns, ...pgbrRuns].every((r) => r.exact);
      const rowCounts = [...new Set([...ourRuns, ...instanceRuns, ...pgbrRuns].map((r) => r.rows))];
      const phaseNames = [...new Set(ourRuns.flatMap((r) => Object.keys(phaseSeconds(r))))];
      const ours = {
        secondsStats: stats(ourRuns.map((r) => r.seconds)),
        untilReplayedStats: stats(ourRuns.map((r) => r.untilReplayedSeconds ?? NaN)),
        // Over the runs whose 100 ms sampling saw the phase (a short one, such as queued, can slip between two samples).
        phaseSecondsStats: Object.fromEntries(phaseNames.map((n) => [n, stats(ourRuns.flatMap((r) => (n in phaseSeconds(r) ? [phaseSeconds(r)[n]] : [])))])),
        runs: ourRuns.map((r) => ({ ...r, phaseSeconds: phaseSeconds(r) })),
      };
      const oursInstance = { secondsStats: stats(instanceRuns.map((r) => r.seconds)), runs: instanceRuns };
      const pgbackrest = {
        secondsStats: stats(pgbrRuns.map((r) => r.seconds)),
        restoreCommandStats: stats(pgbrRuns.map((r) => r.restoreCommandSeconds)),
        runs: pgbrRuns,
      };
      disk.stop();
      const loadAtEnd = loadavg();
      const atScale = SCALE >= 68 && LOAD_S >= 900;
      const result = {
        bench: 'pitr-scale',
        started: started.toISOString(),
        finished: new Date().toISOString(),
        machine: machineInfo({ postgres: [path.join(PG_BIN, 'postgres'), ['--version']], zstd: ['zstd', ['--version']] }),
        loadAverage: { start: loadAtStart, end: loadAtEnd },
        settings: { pgbenchScale: SCALE, loadSeconds: LOAD_S, tps: TPS, archiveIntervalSeconds: ARCHIVE_S, recoveries: RECOVERIES, targetBeforeEndSeconds: BEFORE_END_S },
        pgbackrestVersion: (await run('pgbackrest', ['version'])).stdout.trim(),
        source: { appDatabaseMiB: round(rig.dbBytes / MiB, 1), appDatabaseMiBAtEnd: round(dbBytesAtEnd / MiB, 1), clusterMiB: round(rig.clusterBytes / MiB, 1) },
        baseBackups: base,
        load: { seconds: round(loadSeconds, 1), commits, walBytes: walLoad, walMiB: round(walLoad / MiB, 1), walRateMiBs: round(walLoad / MiB / loadSeconds, 3), archivesHoldEndAfter: catchUp },
        repositoryGrowthDuringLoadMiB: { ours: round((repoAfter.ours - repoBefore.ours) / MiB, 1), pgbackrest: round((repoAfter.pgbr - repoBefore.pgbr) / MiB, 1) },
        repositoryTotalMiB: { ours: round(repoAfter.ours / MiB, 1), pgbackrest: round(repoAfter.pgbr / MiB, 1) },
        disk: { workDirMiBAfterLoad: workDirMiB, leastFreeMiB: disk.leastMiB() },
        recovery: {
          targetTime: target.toISOString(),
          walFromOurBaseToTargetMiB: round(walToReplay / MiB, 1),
          stampedByTarget,
          rowCountsSeen: rowCounts,
          allExact: exact,
          oursOverPgbackrestMedian: round(ours.secondsStats.median / pgbackrest.secondsStats.median, 2),
          oursInstanceOverPgbackrestMedian: round(oursInstance.secondsStats.median / pgbackrest.secondsStats.median, 2),
          ours,
          oursInstance,
          pgbackrest,
          note: 'interleaved ours, ours as an instance, pgBackRest. Ours: restoreToPointInTime as a clone, from the mutation to the operation\'s finish; oursInstance: openRecoveryInstance, from the mutation until the instance is READY (the whole cluster at the time, read-only, on a TCP port, as pgBackRest\'s restore gives it), closed after counting; untilReplayed ends when moving-database starts; phaseSeconds are each phase\'s own duration. pgBackRest: restore --type=time of the whole cluster plus PostgreSQL\'s replay until promoted. Exact: no row stamped after the time, and every row stamped 2 s before it present.',
        },
        note: atScale ? 'at the issue\'s scale (1 GiB plus 15 minutes of WAL)' : `smaller than the issue's "1 GiB plus 15 minutes of WAL": ${round(rig.dbBytes / MiB)} MiB database, ${LOAD_S} s of load`,
      };
      await fs.mkdir(path.join(BENCH, 'results'), { recursive: true });
      await fs.writeFile(path.join(BENCH, 'results', 'pitr-scale.json'), `${JSON.stringify(result, null, 2)}\n`);
      const s = (x: { median: number; min: number; max: number }) => `${x.median} s (${x.min}-${x.max})`;
      log(`database ${result.source.appDatabaseMiB} MiB (${result.source.appDatabaseMiBAtEnd} at the end), ${result.load.walMiB} MiB of WAL in ${result.load.seconds} s`);
      log(`recovery, median of ${RECOVERIES}: ours ${s(ours.secondsStats)}, replayed at ${s(ours.untilReplayedStats)}; ours as an instance ${s(oursInstance.secondsStats)}; pgBackRest ${s(pgbackrest.secondsStats)} (restore ${s(pgbackrest.restoreCommandStats)}); ours/pgBackRest ${result.recovery.oursOverPgbackrestMedian}, instance/pgBackRest ${result.recovery.oursInstanceOverPgbackrestMedian}`);
      log(`our phases (median s): ${Object.entries(ours.phaseSecondsStats).map(([n, x]) => `${n} ${x.median}`).join(', ')}`);
      log(`${exact ? 'every recovery exact' : 'SOME RECOVERY NOT EXACT'}; rows seen ${rowCounts.join(', ')}; least free disk ${result.disk.leastFreeMiB} MiB; load average ${loadAtStart.join(' ')} -> ${loadAtEnd.join(' ')}`);
      log('wrote bench/results/pitr-scale.json');
      return exact;
    } finally {
      disk.stop();
    }
  });
  if (!allExact) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
