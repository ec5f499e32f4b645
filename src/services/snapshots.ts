import { z } from 'zod';
import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { label, parseInput } from '../domain/validation.ts';
import { backup, copySnapshot, forgetSnapshots, listSnapshots, type BackupSource } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import type { Snapshot } from '../generated/prisma/client.ts';
import { databaseSize, startDump, startDumpToPipe, tableDataSize, type Dump, type PipedDump } from '../sources/postgres.ts';
import { raiseAlert } from './alerts.ts';
import { reassessAfterBackup } from './damage.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, HANDED_BACK_MESSAGE, progressReporter, requeueOperation, steadyTotal, TimedOutError } from './operations.ts';
import { underLimits } from './job-limits.ts';
import { messageOf } from './messages.ts';
import { openRepository, type OpenedRepository, OWN_WRITES } from './repositories.ts';
import { enqueueCopy, enqueueRetention, enqueueScheduleReaction } from './follow-ups.ts';
import { recordUse } from './destinations.ts';
import { requireVisibleDestinations } from './destination-choice.ts';
import { BackendAccessError } from '../destinations/backend.ts';
import type { Viewer } from './viewer.ts';

// Moved to modules of their own so the services that use them need not import this one; still
// exported here for callers that name them from snapshots.ts.
export { getSnapshot } from './snapshot-read.ts';
export { underLimits } from './job-limits.ts';
export { messageOf } from './messages.ts';

/**
 * Snapshots: the API records a Snapshot (CREATING), one SnapshotCopy per destination and an
 * Operation, and enqueues `snapshot_create` in the same transaction, on the environment's named
 * queue so one environment runs one job at a time. The job streams pg_dump and the files folder
 * into the first destination's repository, copies the result to the others, and only then marks
 * the snapshot READY. Whatever stops it midway leaves no snapshot file in any repository.
 */

export const INCLUDES = ['DB', 'FILES'] as const;
export type Include = (typeof INCLUDES)[number];

const metadata = z
  .record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,39}$/, 'keys are identifiers of at most 40 characters'), z.string().max(500, 'values are at most 500 characters'))
  .refine((m) => Object.keys(m).length <= 20, 'at most 20 entries');

export const createSnapshotInput = z.object({
  environmentId: z.string(),
  includes: z.array(z.enum(INCLUDES)).min(1, 'must include DB, FILES or both').default(['DB', 'FILES']),
  label: label.nullish(),
  kind: z.enum(['MANUAL', 'PRE_DEPLOY']).default('MANUAL'),
  metadata: metadata.nullish(),
  /** Left out or empty: the environment's destinations. */
  destinationIds: z.array(z.string().min(1)).max(10, 'at most 10 destinations').nullish(),
  idempotencyKey: idempotencyKey.nullish(),
});

/** Tags written into every repository snapshot, so the repository alone tells what it holds. */
export function snapshotTags(s: Pick<Snapshot, 'environmentId' | 'kind' | 'id'>): string[] {
  return ['backplane', `env:${s.environmentId}`, `kind:${s.kind.toLowerCase()}`, `snapshot:${s.id}`];
}

/** Records a snapshot and enqueues its job; the same idempotency key with the same input returns the first operation. */
export async function createSnapshot(
  deps: Deps,
  viewer: Viewer,
  raw: z.input<typeof createSnapshotInput>,
  opts: { kind?: 'SCHEDULED' | 'SAFETY'; scheduleId?: string; destinationIds?: string[] } = {},
): Promise<{ operationId: string; snapshotId: string }> {
  const input = parseInput(createSnapshotInput, raw);
  const env = await getEnvironment(deps, viewer, input.environmentId);
  const includes = [...new Set(input.includes)];
  if (includes.includes('FILES') && !env.filesPath) {
    throw ValidationError.field(['input', 'includes'], 'this environment has no files path; include DB only, or set filesPath first');
  }
  if (env.status !== 'READY') throw new ConflictError(ErrorCode.ENVIRONMENT_NOT_READY, `This environment is ${env.status.toLowerCase()}: the restore that creates it has not succeeded`);
  const chosen = input.destinationIds?.length ? [...new Set(input.destinationIds)] : null;
  // Another destination than the environment's is only one the caller may see; any other is "not found".
  if (chosen) await requireVisibleDestinations(deps, viewer, chosen);
  const hash = input.idempotencyKey ? inputHash({ ...input, idempotencyKey: undefined, includes: [...includes].sort(), destinationIds: chosen ? [...chosen].sort() : undefined }) : null;
  if (input.idempotencyKey) {
    const earlier = await replayed(deps, viewer.organizationId, 'createSnapshot', input.idempotencyKey, hash!);
    if (earlier) return snapshotOfOperation(deps, earlier);
  }
  // The caller or a schedule may name destinations; otherwise the environment's defaults.
  const named = chosen ?? (opts.destinationIds?.length ? opts.destinationIds : null);
  const destinations = named
    ? named.map((destinationId) => ({ destinationId }))
    : await deps.db.environmentDestination.findMany({ where: { environmentId: env.id }, orderBy: { createdAt: 'asc' } });
  if (destinations.length === 0) throw new ConflictError(ErrorCode.NO_DESTINATION, 'This environment has no destination to store snapshots in');

  const kind = opts.kind ?? input.kind;
  const expiresAt = kind === 'MANUAL' || kind === 'PRE_DEPLOY' ? await manualExpiry(deps, env.id) : null;

  try {
    return await deps.db.$transaction(async (tx) => {
      const snapshot = await tx.snapshot.create({
        data: {
          organizationId: env.organizationId,
          projectId: env.projectId,
          environmentId: env.id,
          kind,
          includes,
          expiresAt,
          label: input.label ?? null,
          metadata: input.metadata ?? undefined,
          scheduleId: opts.scheduleId ?? null,
          copies: { create: destinations.map((d) => ({ destinationId: d.destinationId })) },
        },
      });
      const op = await tx.operation.create({
        data: { organizationId: env.organizationId, environmentId: env.id, type: 'SNAPSHOT', snapshotId: snapshot.id, phase: 'queued', input: { includes } },
      });
      if (input.idempotencyKey) {
        await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'createSnapshot', key: input.idempotencyKey, hash: hash!, operationId: op.id });
      }
      await enqueueJob(tx, 'snapshot_create', { operationId: op.id }, { queueName: env.id, jobKey: operationJobKey(op.id), maxAttempts: 3 });
      await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'SNAPSHOT', environmentId: env.id, subjectId: snapshot.id });
      return { operationId: op.id, snapshotId: snapshot.id };
    });
  } catch (err) {
    // Two requests with one new key raced: the loser answers with the winner's operation.
    if (input.idempotencyKey && (err as { code?: string }).code === 'P2002') {
      const earlier = await replayed(deps, viewer.organizationId, 'createSnapshot', input.idempotencyKey, hash!);
      if (earlier) return snapshotOfOperation(deps, earlier);
    }
    throw err;
  }
}

/** A manual or pre-deploy snapshot taken now expires after its environment's retentionDays (none: it never does). */
async function manualExpiry(deps: Deps, environmentId: string): Promise<Date | null> {
  const settings = await deps.db.environmentSettings.findUnique({ where: { environmentId }, select: { retentionDays: true } });
  return settings?.retentionDays != null ? new Date(deps.clock.now().getTime() + settings.retentionDays * 86_400_000) : null;
}

async function snapshotOfOperation(deps: Deps, operationId: string) {
  const op = await deps.db.operation.findUniqueOrThrow({ where: { id: operationId } });
  return { operationId, snapshotId: op.snapshotId! };
}

/** The job: captures the snapshot into every destination. Throws only for what a retry can fix. */
export async function runSnapshot(
  deps: Deps,
  operationId: string,
  jobSignal?: AbortSignal,
  /** databaseUrl: dump this database instead of the environment's (an import's, before it is swapped in). */
  opts: { databaseUrl?: string } = {},
): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op || !op.snapshotId) return;
  const snapshot = await deps.db.snapshot.findUniqueOrThrow({
    where: { id: op.snapshotId },
    include: { copies: { orderBy: { createdAt: 'asc' } }, environment: { include: { settings: true } } },
  });
  const env = snapshot.environment;
  const timeoutSeconds = env.settings?.timeoutSeconds ?? 3600;
  const progress = progressReporter(deps, operationId);
  const written: { opened: OpenedRepository; repoSnapshotId: string; destinationId: string }[] = [];
  const opened: OpenedRepository[] = [];
  const open = (destinationId: string, signal: AbortSignal) => openRepository(deps, destinationId, signal).then((o) => (opened.push(o), o));
  // The first destination's repository, opened from the start (see below); closed with the rest.
  let firstOpening: Promise<OpenedRepository> | null = null;
  const started = Date.now();
  try {
    await underLimits(deps, operationId, timeoutSeconds, jobSignal, async (signal) => {
      progress.report({ phase: 'preparing', bytesDone: 0 });
      // The data is captured into the first destination that works, in the environment's order;
      // when one cannot be opened or fails under the upload, the next one is tried with a fresh dump.
      const order = (await deps.db.environmentDestination.findMany({ where: { environmentId: env.id }, orderBy: { createdAt: 'asc' } })).map((d) => d.destinationId);
      const rank = (destinationId: string) => (order.includes(destinationId) ? order.indexOf(destinationId) : order.length);
      snapshot.copies.sort((a, b) => rank(a.destinationId) - rank(b.destinationId));
      // Opening a repository (scrypt, the index) takes a few hundred milliseconds that need
      // nothing from the database: the first one opens meanwhile the database is sized and
      // pg_dump starts, instead of after. Its failure is still the destination's (awaited below).
      if (snapshot.copies.length) {
        firstOpening = open(snapshot.copies[0].destinationId, signal);
        firstOpening.catch(() => undefined);
      }
      const includesDb = snapshot.includes.includes('DB');
      const databaseUrl = includesDb ? (opts.databaseUrl ?? deps.secrets.open(env.databaseUrlEncrypted)) : null;
      const [dbBytes, dumpEstimate] = databaseUrl ? await Promise.all([databaseSize(databaseUrl), expectedDumpBytes(deps, env.id, databaseUrl)]) : [null, undefined];
      const steady = steadyTotal();
      const copyFailed = async (copy: { id: string; destinationId: string }, err: unknown) => {
        // One destination failing does not lose the snapshot the others hold.
        await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'FAILED', repoSnapshotId: null, error: messageOf(err) } });
        await raiseAlert(deps, { organizationId: env.organizationId, environmentId: env.id, operationId, type: 'COPY_FAILED', severity: 'WARNING', message: `Snapshot copy to a destination failed: ${messageOf(err)}` });
        await recordUse(deps, copy.destinationId, err);
      };

      let primary: OpenedRepository | null = null;
      let result: Awaited<ReturnType<typeof backup>> | null = null;
      let primaryIndex = -1;
      for (const [i, copy] of snapshot.copies.entries()) {
        const attempt = new AbortController();
        const attemptSignal = AbortSignal.any([signal, attempt.signal]);
        let dump: Dump | PipedDump | null = null;
        // Set while the destination opens: a failure then is the destination's, not the source's.
        let opening = false;
        try {
          // pg_dump starts first: its own start (connecting, locking, reading the catalog) then
          // overlaps opening the repository (scrypt, index, parent), and it waits on the pipe
          // until the backup reads. Through a pipe a codec thread reads, where the platform
          // allows: the dump's bytes never reach the event loop that answers the API.
          dump = databaseUrl ? ((await startDumpToPipe(databaseUrl, { signal: attemptSignal })) ?? startDump(databaseUrl, { signal: attemptSignal })) : null;
          opening = true;
          const candidate = await (i === 0 && firstOpening ? firstOpening : open(copy.destinationId, signal));
          opening = false;
          if (op.attempts > 1) await forgetEarlierAttempt(candidate, snapshot.id, signal);
          await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'UPLOADING' } });
          const sources: Record<string, BackupSource> = {};
          if (dump) sources[dumpPath(env.databaseName)] = 'pipe' in dump ? { pipe: dump.pipe, size: dumpEstimate } : { stream: dump.stream, size: dumpEstimate };
          if (snapshot.includes.includes('FILES') && env.filesPath) sources['/files'] = env.filesPath;
          const parent = await parentSnapshot(deps, env.id, copy.destinationId, snapshot.id);
          progress.report({ phase: includesDb ? 'dumping' : 'uploading' });
          const capturing = backup(candidate.repo, sources, {
            tags: snapshotTags(snapshot),
            parent: parent ?? undefined,
            signal: attemptSignal,
            onProgress: (p) => progress.report({ bytesDone: p.bytesDone, bytesTotal: steady(p.bytesDone, p.bytesTotal) }),
          });
          let captured: Awaited<typeof capturing>;
          try {
            // pg_dump's exit status decides: a dump that ended early must not pass for a whole one.
            [captured] = await Promise.all([capturing, dump?.done]);
          } catch (err) {
            // The other one may still run, and the backup holds the repository's lock until it
            // ends: stop it and wait, or a process that exits next (a worker stopping) leaves
            // its lock file behind.
            attempt.abort(err);
            await Promise.allSettled([capturing, dump?.done]);
            throw err;
          }
          // Where a slow snapshot's time went: the backup itself against the rest of the job.
          deps.logger.info(
            { operationId, destinationId: copy.destinationId, sinceStartMs: Date.now() - started, backupMs: captured.durationMs, bytesProcessed: captured.bytesProcessed, bytesAdded: captured.bytesAdded },
            'snapshot captured',
          );
          written.push({ opened: candidate, repoSnapshotId: captured.snapshotId, destinationId: copy.destinationId });
          await deps.db.snapshotCopy.update({
            where: { id: copy.id },
            data: { status: 'READY', repoSnapshotId: captured.snapshotId, sizeBytes: BigInt(captured.bytesProcessed), addedBytes: BigInt(captured.bytesAdded), completedAt: deps.clock.now() },
          });
          await recordUse(deps, copy.destinationId);
          primary = candidate;
          result = captured;
          primaryIndex = i;
          break;
        } catch (err) {
          attempt.abort(err);
          await dump?.done.catch(() => undefined);
          // Only a destination's fault moves on to the next one; a failing source fails the snapshot.
          const destinationFault = !signal.aborted && (opening || err instanceof BackendAccessError);
          if (!destinationFault || i === snapshot.copies.length - 1) throw err;
          await copyFailed(copy, err);
        } finally {
          if (dump && 'pipe' in dump) dump.pipe.close(); // unless the engine took it
        }
      }
      if (!primary || !result) throw new Error('no destination could store the snapshot');

      for (const copy of snapshot.copies.slice(primaryIndex + 1)) {
        progress.report({ phase: 'copying' });
        try {
          const target = await open(copy.destinationId, signal);
          // The copies of a run a dead worker began carry the same tag: a retry must not leave two there either.
          if (op.attempts > 1) await forgetEarlierAttempt(target, snapshot.id, signal);
          await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'UPLOADING' } });
          const copied = await copySnapshot(primary.repo, target.repo, result.snapshotId, { signal });
          written.push({ opened: target, repoSnapshotId: copied.snapshotId, destinationId: copy.destinationId });
          await deps.db.snapshotCopy.update({
            where: { id: copy.id },
            data: { status: 'READY', repoSnapshotId: copied.snapshotId, sizeBytes: BigInt(result.bytesProcessed), addedBytes: BigInt(copied.bytesCopied), completedAt: deps.clock.now() },
          });
          await recordUse(deps, copy.destinationId);
        } catch (err) {
          if (signal.aborted) throw err;
          await copyFailed(copy, err);
        }
      }

      // Some destinations failed, at least one holds the snapshot: the failure policy decides.
      const failedCopies = await deps.db.snapshotCopy.findMany({ where: { snapshotId: snapshot.id, status: 'FAILED' } });
      const policy = env.settings?.failurePolicy ?? 'ALERT_ONLY';
      if (failedCopies.length > 0 && policy === 'PAUSE_SCHEDULE') {
        throw new Error(`${failedCopies.length} of ${snapshot.copies.length} destinations failed and the failure policy (PAUSE_SCHEDULE) wants the snapshot on every one: ${failedCopies[0].error}`);
      }
      if (failedCopies.length > 0 && policy === 'RETRY') {
        const runAt = new Date(deps.clock.now().getTime() + (env.settings?.retryBackoffSeconds ?? 60) * 1000);
        await deps.db.$transaction(async (tx) => {
          for (const c of failedCopies) await enqueueCopy(tx, snapshot, c.destinationId, { runAt });
        });
      }

      progress.report({ phase: 'finalizing', bytesDone: result.bytesProcessed, bytesTotal: result.bytesProcessed });
      await progress.flush();
      await deps.db.snapshot.update({
        where: { id: snapshot.id },
        data: {
          status: 'READY',
          sizeBytes: BigInt(result.bytesProcessed),
          addedBytes: BigInt(result.bytesAdded),
          fileCount: result.files,
          databaseSizeBytes: dbBytes,
          dumpBytes: includesDb && result.streamBytes[dumpPath(env.databaseName)] !== undefined ? BigInt(result.streamBytes[dumpPath(env.databaseName)]) : null,
          durationMs: Date.now() - started,
          completedAt: deps.clock.now(),
        },
      });
    });
    // Before the operation ends: a caller that waits for it sees snapshots this one made whole again.
    for (const w of written) await reassessAfterBackup(deps, w.destinationId, w.opened.repo, jobSignal);
    await finishOperation(deps, operationId, 'SUCCEEDED');
    await deps.events.publish('environmentActivity', env.id, { kind: 'SNAPSHOT', environmentId: env.id, subjectId: snapshot.id });
    if (snapshot.kind === 'SCHEDULED') await enqueueRetention(deps.db, env.id);
  } catch (err) {
    await progress.flush();
    // Nothing half-visible: forget whatever this run managed to write before it stopped.
    for (const w of written) await forgetSnapshots(w.opened.repo, [w.repoSnapshotId], undefined, OWN_WRITES).catch((e) => deps.logger.error({ err: e }, 'could not forget a partial snapshot'));
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      // The worker is stopping: put the operation back so the retry starts clean.
      await requeueOperation(deps, operationId, HANDED_BACK_MESSAGE);
      await deps.db.snapshotCopy.updateMany({ where: { snapshotId: snapshot.id }, data: { status: 'PENDING', repoSnapshotId: null } });
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    const message = messageOf(err);
    await deps.db.snapshot.update({ where: { id: snapshot.id }, data: { status: 'FAILED', error: message, durationMs: Date.now() - started } });
    await deps.db.snapshotCopy.updateMany({ where: { snapshotId: snapshot.id, status: { not: 'FAILED' } }, data: { status: 'FAILED', repoSnapshotId: null, error: message } });
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', message);
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: env.organizationId, environmentId: env.id, operationId, type: 'SNAPSHOT_FAILED', severity: 'CRITICAL', message: `Snapshot of ${env.name} failed: ${message}` });
      if (snapshot.kind === 'SCHEDULED') await enqueueScheduleReaction(deps.db, snapshot.id);
    }
    await deps.events.publish('environmentActivity', env.id, { kind: 'SNAPSHOT', environmentId: env.id, subjectId: snapshot.id });
  } finally {
    // An early open still under way when the job stopped must not outlive it.
    await (firstOpening as Promise<OpenedRepository> | null)?.catch(() => undefined);
    for (const o of opened) await o.close().catch(() => undefined);
  }
}

/**
 * Forgets what an earlier attempt of this snapshot's job wrote to a repository (a worker died
 * after writing it but before the catalog was told), so that one Backplane snapshot is one
 * repository snapshot per destination.
 */
async function forgetEarlierAttempt(opened: OpenedRepository, snapshotId: string, signal: AbortSignal): Promise<void> {
  const orphans = (await listSnapshots(opened.repo, signal)).filter((sn) => sn.tags?.includes(`snapshot:${snapshotId}`));
  await forgetSnapshots(opened.repo, orphans.map((sn) => sn.id), signal, OWN_WRITES);
}

const dumpPath = (databaseName: string) => `/db/${databaseName}.dump`;

/**
 * What this run's pg_dump will likely write, for the progress total: the last snapshot's dump
 * (the best guess, since a database changes little between snapshots), else the tables' data
 * without indexes. Never the database's size on disk, which counts indexes and dead space.
 */
async function expectedDumpBytes(deps: Deps, environmentId: string, databaseUrl: string): Promise<number> {
  const last = await deps.db.snapshot.findFirst({ where: { environmentId, status: 'READY', dumpBytes: { not: null } }, orderBy: { createdAt: 'desc' }, select: { dumpBytes: true } });
  if (last?.dumpBytes != null) return Number(last.dumpBytes);
  return Number(await tableDataSize(databaseUrl));
}

/** The newest READY copy of this environment on the destination: its unchanged files are not read again. */
async function parentSnapshot(deps: Deps, environmentId: string, destinationId: string, exceptSnapshotId: string): Promise<string | null> {
  const copy = await deps.db.snapshotCopy.findFirst({
    where: { destinationId, status: 'READY', repoSnapshotId: { not: null }, snapshot: { environmentId, status: 'READY', id: { not: exceptSnapshotId } } },
    orderBy: { createdAt: 'desc' },
  });
  return copy?.repoSnapshotId ?? null;
}
