import { rm } from 'node:fs/promises';
import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { contentWriter, findSnapshot, resolvePath, restore as restoreFiles, type Repository } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { drillDirectoryPath, scanFiles } from '../sources/files.ts';
import { drillDatabaseName, restoreNewDatabase, runCheckQuery } from '../sources/new-database.ts';
import { raiseAlert } from './alerts.ts';
import { openReadableCopy } from './copies.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, HANDED_BACK_MESSAGE, progressReporter, requeueOperation, TimedOutError } from './operations.ts';
import { discardDrillLeftovers, drillMarker } from './restore-leftovers.ts';
import type { OpenedRepository } from './repositories.ts';
import { messageOf, underLimits } from './snapshots.ts';
import type { Viewer } from './viewer.ts';

/**
 * Restore drills: a backup counts once it has been restored. A drill restores the environment's
 * newest READY snapshot into a scratch database `bp_drill_<id>` on the environment's own server
 * and a scratch folder `<files>.bp_drill_<id>` beside its own, runs the environment's
 * drillCheckQuery there (read-only; it must return one boolean true), compares the files' count
 * and bytes with the snapshot's tree, records the time until the data was usable (RTO) on a
 * RestoreDrill, and drops both scratch copies whatever happened (after a crash, the recovery
 * does: restore-leftovers.ts). A failed drill raises DRILL_FAILED. The environment's own database
 * and folder are never touched: only names the drill made are created, read and dropped.
 */

export const runRestoreDrillInput = z.object({
  environmentId: z.string(),
  idempotencyKey: idempotencyKey.nullish(),
});

/** Starts a drill of the environment now (or for a schedule's drillCron: `scheduled`). */
export async function startRestoreDrill(
  deps: Deps,
  viewer: Viewer,
  raw: z.input<typeof runRestoreDrillInput>,
  opts: { scheduled?: boolean } = {},
): Promise<{ operationId: string; drillId: string }> {
  const input = parseInput(runRestoreDrillInput, raw);
  const env = await getEnvironment(deps, viewer, input.environmentId);
  const hash = input.idempotencyKey ? inputHash({ environmentId: env.id }) : null;
  if (input.idempotencyKey) {
    const earlier = await replayed(deps, viewer.organizationId, 'runRestoreDrill', input.idempotencyKey, hash!);
    if (earlier) return drillOfOperation(deps, earlier);
  }
  if (env.status !== 'READY') throw new ConflictError(ErrorCode.ENVIRONMENT_NOT_READY, `This environment is ${env.status.toLowerCase()}: the restore that creates it has not succeeded`);
  const snapshot = await deps.db.snapshot.findFirst({ where: { environmentId: env.id, status: 'READY' }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] });
  if (!snapshot) throw new NotFoundError(ErrorCode.SNAPSHOT_NOT_FOUND, 'This environment has no READY snapshot to drill');
  const settings = await deps.db.environmentSettings.findUnique({ where: { environmentId: env.id } });
  try {
    return await deps.db.$transaction(async (tx) => {
      // One drill per environment at a time: checked under a lock, so two at once start one.
      await tx.$queryRawUnsafe("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext('backplane:drill'), hashtext($1))) AS l", env.id);
      const running = await tx.operation.findFirst({ where: { environmentId: env.id, type: 'RESTORE_DRILL', status: { in: ['QUEUED', 'RUNNING'] } } });
      if (running) throw new ConflictError(ErrorCode.DRILL_RUNNING, 'A restore drill of this environment is already queued or running');
      const op = await tx.operation.create({
        data: { organizationId: env.organizationId, environmentId: env.id, type: 'RESTORE_DRILL', snapshotId: snapshot.id, phase: 'queued', input: { scheduled: !!opts.scheduled } },
      });
      const drill = await tx.restoreDrill.create({
        data: { organizationId: env.organizationId, environmentId: env.id, snapshotId: snapshot.id, operationId: op.id, scheduled: !!opts.scheduled, checkQuery: settings?.drillCheckQuery ?? null },
      });
      if (input.idempotencyKey) await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'runRestoreDrill', key: input.idempotencyKey, hash: hash!, operationId: op.id });
      // The environment's queue: a drill never runs beside a snapshot or restore of the same environment.
      await enqueueJob(tx, 'restore_drill', { operationId: op.id }, { queueName: env.id, jobKey: operationJobKey(op.id), maxAttempts: 1 });
      await publishInTransaction(tx, 'operation', op.id, { operationId: op.id, status: 'QUEUED' });
      return { operationId: op.id, drillId: drill.id };
    });
  } catch (err) {
    if (input.idempotencyKey && (err as { code?: string }).code === 'P2002') {
      const earlier = await replayed(deps, viewer.organizationId, 'runRestoreDrill', input.idempotencyKey, hash!);
      if (earlier) return drillOfOperation(deps, earlier);
    }
    throw err;
  }
}

async function drillOfOperation(deps: Deps, operationId: string) {
  const drill = await deps.db.restoreDrill.findUniqueOrThrow({ where: { operationId } });
  return { operationId, drillId: drill.id };
}

/** Regular files and their bytes under `/files` of a repository snapshot: what the scratch folder must hold. */
async function snapshotFileTotals(repo: Repository, repoSnapshotId: string, signal: AbortSignal): Promise<{ files: number; bytes: bigint }> {
  const sn = await findSnapshot(repo, repoSnapshotId, undefined, signal);
  const root = await resolvePath(repo, sn, '/files', signal);
  let files = 0;
  let bytes = 0n;
  const pending = [root.subtree!];
  while (pending.length) {
    const tree = await repo.loadTree(pending.pop()!, signal);
    for (const n of tree.nodes) {
      if (n.type === 'file') {
        files++;
        bytes += BigInt(n.size ?? 0);
      } else if (n.type === 'dir' && n.subtree) pending.push(n.subtree);
    }
  }
  return { files, bytes };
}

/** The dump file inside a snapshot: the one file under /db. */
async function dumpFile(repo: Repository, repoSnapshotId: string, signal: AbortSignal) {
  const sn = await findSnapshot(repo, repoSnapshotId, undefined, signal);
  const db = await resolvePath(repo, sn, '/db', signal);
  const tree = await repo.loadTree(db.subtree!, signal);
  const file = tree.nodes.find((n) => n.type === 'file' && n.name.endsWith('.dump'));
  if (!file) throw new Error('the snapshot holds no database dump');
  return file;
}

/** The restore_drill job. Never retried: a failed drill is a result, recorded as such. */
export async function runDrill(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op) return;
  const drill = await deps.db.restoreDrill.findUniqueOrThrow({ where: { operationId }, include: { environment: { include: { settings: true } }, snapshot: true } });
  const env = drill.environment;
  const progress = progressReporter(deps, operationId);
  let opened: OpenedRepository | undefined;
  const found: { filesFound?: number; bytesFound?: bigint; filesExpected?: number; bytesExpected?: bigint } = {};
  let rtoMs: number | null = null;
  // Before the result is recorded, so a drill that ended has left nothing behind. A failure here
  // is logged, not the drill's: the recovery sweep drops them later.
  const dropScratch = () =>
    discardDrillLeftovers(deps, drill.id).catch((e: unknown) => deps.logger.error({ err: e, operationId }, 'could not drop a drill’s scratch copies; the recovery sweep retries'));
  try {
    if (op.attempts > 1) await discardDrillLeftovers(deps, drill.id);
    await deps.db.restoreDrill.update({ where: { id: drill.id }, data: { status: 'RUNNING' } });
    await underLimits(deps, operationId, env.settings?.timeoutSeconds ?? 3600, jobSignal, async (signal) => {
      if (!drill.snapshot || drill.snapshot.status !== 'READY') throw new Error(`the snapshot to drill is ${drill.snapshot ? drill.snapshot.status.toLowerCase() : 'gone'}`);
      const started = Date.now();
      progress.report({ phase: 'restoring', bytesDone: 0, bytesTotal: Number(drill.snapshot.sizeBytes) || null });
      const source = await openReadableCopy(deps, drill.snapshot.id, signal);
      opened = source.opened;
      const repo = source.opened.repo;
      let done = 0;
      const onBytes = (n: number) => progress.report({ bytesDone: (done += n) });
      // Both sides at once, as a restore does; the first to fail stops the other.
      const sides = new AbortController();
      const sideSignal = AbortSignal.any([signal, sides.signal]);
      const failFast = <T>(p: Promise<T>): Promise<T> => p.catch((err: unknown) => (sides.abort(err), Promise.reject(err)));
      const databaseSide = drill.snapshot.includes.includes('DB')
        ? failFast(
            (async () => {
              const url = await environmentDatabaseUrl(deps, env.id);
              const file = await dumpFile(repo, source.repoSnapshotId, sideSignal);
              const scratchUrl = await restoreNewDatabase(url, drillDatabaseName(drill.id), contentWriter(repo, file, { signal: sideSignal, onBytes }), { comment: drillMarker(drill.id), signal: sideSignal });
              if (drill.checkQuery) {
                progress.report({ phase: 'checking' });
                await runCheckQuery(scratchUrl, drill.checkQuery, Math.min(300, env.settings?.timeoutSeconds ?? 3600) * 1000);
              }
            })(),
          )
        : Promise.resolve();
      const filesSide = drill.snapshot.includes.includes('FILES') && env.filesPath
        ? failFast(
            (async () => {
              const dir = drillDirectoryPath(env.filesPath!, drill.id);
              await rm(dir, { recursive: true, force: true });
              await restoreFiles(repo, source.repoSnapshotId, dir, { path: '/files', signal: sideSignal, onProgress: (p) => progress.report({ bytesDone: done + p.bytesDone }) });
              const [expected, scanned] = await Promise.all([snapshotFileTotals(repo, source.repoSnapshotId, sideSignal), scanFiles(dir)]);
              Object.assign(found, { filesExpected: expected.files, bytesExpected: expected.bytes, filesFound: scanned.fileCount, bytesFound: scanned.bytes });
              if (expected.files !== scanned.fileCount || expected.bytes !== scanned.bytes) {
                throw new Error(`the restored files differ from the snapshot: ${scanned.fileCount} files and ${scanned.bytes} bytes, the snapshot has ${expected.files} and ${expected.bytes}`);
              }
            })(),
          )
        : Promise.resolve();
      const results = await Promise.allSettled([databaseSide, filesSide]);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw sides.signal.aborted ? sides.signal.reason : (failed as PromiseRejectedResult).reason;
      // Usable from here: restored and checked. Dropping the scratch copies is not part of it.
      rtoMs = Date.now() - started;
    });
    await dropScratch();
    await progress.flush();
    await deps.db.restoreDrill.update({ where: { id: drill.id }, data: { status: 'SUCCEEDED', checkPassed: drill.checkQuery ? true : null, rtoMs, completedAt: deps.clock.now(), ...found } });
    await finishOperation(deps, operationId, 'SUCCEEDED');
  } catch (err) {
    await dropScratch();
    await progress.flush();
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      await deps.db.restoreDrill.update({ where: { id: drill.id }, data: { status: 'QUEUED' } });
      await requeueOperation(deps, operationId, HANDED_BACK_MESSAGE);
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    const message = messageOf(err);
    const checkFailed = (err as { code?: string }).code === 'CHECK_QUERY_FAILED';
    await deps.db.restoreDrill.update({
      where: { id: drill.id },
      data: { status: cancelled ? 'CANCELLED' : 'FAILED', error: message, completedAt: deps.clock.now(), ...(checkFailed ? { checkPassed: false } : {}), ...found },
    });
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', message);
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: env.organizationId, environmentId: env.id, operationId, type: 'DRILL_FAILED', severity: 'CRITICAL', message: `Restore drill of ${env.name} failed: ${message}` });
    }
  } finally {
    await opened?.close().catch(() => undefined);
  }
}

export interface RestoreDrillStats {
  count: number;
  failures: number;
  medianRtoSeconds: number | null;
  lastRtoSeconds: number | null;
}

/**
 * count, failures, and the median and last RTO of each environment's finished drills, in one
 * statement for all of them (a list of environments shows them).
 */
export async function restoreDrillStatsOf(deps: Deps, environmentIds: readonly string[]): Promise<Map<string, RestoreDrillStats>> {
  const drills = await deps.db.restoreDrill.findMany({
    where: { environmentId: { in: [...environmentIds] }, status: { in: ['SUCCEEDED', 'FAILED'] } },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    select: { environmentId: true, status: true, rtoMs: true },
  });
  const byEnvironment = new Map<string, typeof drills>(environmentIds.map((id) => [id, []]));
  for (const d of drills) byEnvironment.get(d.environmentId)?.push(d);
  return new Map([...byEnvironment].map(([id, list]) => [id, statsOf(list)]));
}

function statsOf(drills: { status: string; rtoMs: number | null }[]): RestoreDrillStats {
  const rtos = drills.filter((d) => d.status === 'SUCCEEDED' && d.rtoMs !== null).map((d) => d.rtoMs!);
  const sorted = [...rtos].sort((a, b) => a - b);
  const median = sorted.length === 0 ? null : sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  return {
    count: drills.length,
    failures: drills.filter((d) => d.status === 'FAILED').length,
    medianRtoSeconds: median === null ? null : median / 1000,
    lastRtoSeconds: rtos.length ? rtos[0] / 1000 : null,
  };
}
