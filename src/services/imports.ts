import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { BackendNotFoundError, objectKeyProblem } from '../destinations/backend.ts';
import { publishInTransaction } from '../events/bus.ts';
import { withDatabase } from '../sources/connection.ts';
import { detectDump, DumpFormatError, openDecompressed, restrictedSql, type DumpFormat } from '../sources/dump-format.ts';
import { FetchDumpError, fetchDump, urlProblem } from '../sources/fetch-dump.ts';
import { canCreateDatabase, prepareDatabase, type PreparedDatabase } from '../sources/postgres.ts';
import { raiseAlert } from './alerts.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { importFile, newImportToken, removeImportFile } from './import-files.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, progressReporter, TimedOutError } from './operations.ts';
import { backendFor } from './repositories.ts';
import { discardRestoreLeftovers, restoreIdOf } from './restore-leftovers.ts';
import { handBackRestore, takeSafetySnapshot } from './restores.ts';
import { messageOf, runSnapshot, underLimits } from './snapshots.ts';
import { destinationWhere, type Viewer } from './viewer.ts';

/**
 * Imports: a dump from outside (an upload, an https URL, or a key on one of the organization's
 * destinations) restored into an environment exactly as a snapshot is. The job takes a SAFETY
 * snapshot, loads the dump into the `<db>__bp_restore_<id>` database a restore would fill, takes
 * the IMPORT snapshot from that database (so what was imported can be restored again later),
 * and swaps it in. The import is recorded as a RestoreLog of its IMPORT snapshot, so the
 * recovery of a killed restore (restore-leftovers.ts) clears a killed import the same way.
 */

/** An upload the API process received into a file (see build-app.ts); the resolver passes it on. */
export interface UploadedDump {
  path: string;
  size: number;
  sha256: string;
  /** More than IMPORT_MAX_BYTES arrived: the file was cut and holds nothing usable. */
  tooLarge: boolean;
}

export const importDumpInput = z.object({
  environmentId: z.string(),
  upload: z.custom<UploadedDump>((v) => typeof v === 'object' && v !== null && 'path' in v).nullish(),
  url: z.string().trim().max(4000, 'must be at most 4000 characters').nullish(),
  destinationId: z.string().nullish(),
  key: z.string().nullish(),
  createSafetySnapshot: z.boolean().default(true),
  idempotencyKey: idempotencyKey.nullish(),
});

/** What the job reads, from the Operation's input. */
interface ImportJobInput {
  /** The token naming the dump file (import-files.ts). */
  file: string;
  source: { kind: 'upload'; size: number } | { kind: 'url'; url: string } | { kind: 'destination'; destinationId: string; key: string };
  createSafetySnapshot: boolean;
}

/** A failure with a catalog code, recorded on the Operation (errorCode) for callers to act on. */
export class ImportError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ImportError';
  }
}

function policyOf(deps: Deps) {
  if (!deps.imports) throw new Error('imports are not configured in this process');
  return deps.imports;
}

export async function importDump(deps: Deps, viewer: Viewer, raw: z.input<typeof importDumpInput>): Promise<{ operationId: string; restoreLogId: string; snapshotId: string }> {
  const input = parseInput(importDumpInput, raw);
  const policy = policyOf(deps);
  const given = [input.upload ? 'file' : null, input.url ? 'url' : null, input.destinationId || input.key ? 'destinationId' : null].filter(Boolean);
  if (given.length !== 1) throw ValidationError.field(['input'], 'give exactly one source: file, url, or destinationId with key');
  if (input.upload?.tooLarge) {
    throw ValidationError.field(['input', 'file'], `the upload is larger than IMPORT_MAX_BYTES (${policy.maxBytes} bytes)`, ErrorCode.IMPORT_TOO_LARGE);
  }
  const env = await getEnvironment(deps, viewer, input.environmentId);

  let source: ImportJobInput['source'];
  let sourceHash: string;
  if (input.upload) {
    // The file is here already: a wrong format is refused now, before anything is recorded.
    try {
      await detectDump(input.upload.path);
    } catch (err) {
      if (!(err instanceof DumpFormatError)) throw err;
      throw ValidationError.field(['input', 'file'], err.message, err.reason === 'unknown' ? ErrorCode.IMPORT_FORMAT_UNKNOWN : ErrorCode.IMPORT_FAILED);
    }
    source = { kind: 'upload', size: input.upload.size };
    sourceHash = `sha256:${input.upload.sha256}`;
  } else if (input.url) {
    const problem = urlProblem(input.url, policy);
    if (problem) throw ValidationError.field(['input', 'url'], problem, ErrorCode.IMPORT_URL_REFUSED);
    source = { kind: 'url', url: input.url };
    sourceHash = `url:${input.url}`;
  } else {
    if (!input.destinationId) throw ValidationError.field(['input', 'destinationId'], 'is required with key');
    const destination = await deps.db.destination.findFirst({ where: destinationWhere(viewer, { id: input.destinationId }) });
    if (!destination) throw new NotFoundError(ErrorCode.DESTINATION_NOT_FOUND, 'Destination not found');
    if (input.key == null) throw ValidationError.field(['input', 'key'], 'is required with destinationId');
    const problem = objectKeyProblem(input.key);
    if (problem) throw ValidationError.field(['input', 'key'], problem);
    source = { kind: 'destination', destinationId: destination.id, key: input.key };
    sourceHash = `destination:${destination.id}:${input.key}`;
  }
  const hash = input.idempotencyKey ? inputHash({ environmentId: env.id, source: sourceHash, createSafetySnapshot: input.createSafetySnapshot }) : null;

  const token = newImportToken();
  if (input.upload) {
    // Moved before the transaction, so the job never starts without its file; if nothing
    // commits, the sweep (import-files.ts) removes it.
    await mkdir(policy.dir, { recursive: true });
    await rename(input.upload.path, importFile(policy.dir, token));
  }
  let replay = false;
  try {
    const started = await deps.db.$transaction(async (tx) => {
      // The same lock as restoreSnapshot's: an import and a restore into one environment exclude each other.
      await tx.$queryRawUnsafe("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext('backplane:restore'), hashtext($1))) AS l", env.id);
      if (input.idempotencyKey) {
        const earlier = await replayed(deps, viewer.organizationId, 'importDump', input.idempotencyKey, hash!);
        if (earlier) {
          replay = true;
          return importOfOperation(deps, earlier);
        }
      }
      const destinations = await tx.environmentDestination.findMany({ where: { environmentId: env.id }, orderBy: { createdAt: 'asc' } });
      if (destinations.length === 0) {
        throw new ConflictError(ErrorCode.NO_DESTINATION, 'The environment has no destination for the IMPORT snapshot (and the safety snapshot): set its destinations first');
      }
      const running = await tx.operation.findFirst({ where: { environmentId: env.id, type: { in: ['RESTORE', 'IMPORT'] }, status: { in: ['QUEUED', 'RUNNING'] } } });
      if (running) throw new ConflictError(ErrorCode.RESTORE_RUNNING, 'A restore or import into this environment is already queued or running');
      const snapshot = await tx.snapshot.create({
        data: {
          organizationId: env.organizationId,
          projectId: env.projectId,
          environmentId: env.id,
          kind: 'IMPORT',
          includes: ['DB'],
          label: 'Import',
          copies: { create: destinations.map((d) => ({ destinationId: d.destinationId })) },
        },
      });
      const jobInput: ImportJobInput = { file: token, source, createSafetySnapshot: input.createSafetySnapshot };
      const op = await tx.operation.create({
        data: { organizationId: env.organizationId, environmentId: env.id, type: 'IMPORT', snapshotId: snapshot.id, phase: 'queued', input: jobInput as object },
      });
      const log = await tx.restoreLog.create({
        data: { organizationId: env.organizationId, snapshotId: snapshot.id, sourceEnvironmentId: env.id, targetEnvironmentId: env.id, operationId: op.id, strategy: 'SWAP', includes: ['DB'] },
      });
      if (input.idempotencyKey) {
        await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'importDump', key: input.idempotencyKey, hash: hash!, operationId: op.id });
      }
      await enqueueJob(tx, 'dump_import', { operationId: op.id }, { queueName: env.id, jobKey: operationJobKey(op.id), maxAttempts: 1 });
      await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'RESTORE', environmentId: env.id, subjectId: log.id });
      return { operationId: op.id, restoreLogId: log.id, snapshotId: snapshot.id };
    });
    // A replay answers with the first request's import, which has its own file.
    if (replay && input.upload) await rm(importFile(policy.dir, token), { force: true });
    return started;
  } catch (err) {
    if (input.upload) await rm(importFile(policy.dir, token), { force: true });
    throw err;
  }
}

async function importOfOperation(deps: Deps, operationId: string) {
  const log = await deps.db.restoreLog.findFirstOrThrow({ where: { operationId } });
  return { operationId, restoreLogId: log.id, snapshotId: log.snapshotId! };
}

/** Puts the dump of a URL or destination source into the import's file. */
async function fetchSource(deps: Deps, input: ImportJobInput, file: string, signal: AbortSignal, onBytes: (total: number | null, done: number) => void): Promise<void> {
  const policy = policyOf(deps);
  await mkdir(policy.dir, { recursive: true });
  const part = `${file}.part`;
  if (input.source.kind === 'url') {
    try {
      await fetchDump(input.source.url, part, policy, { signal, onBytes });
    } catch (err) {
      if (!(err instanceof FetchDumpError)) throw err;
      const code = err.reason === 'refused' ? ErrorCode.IMPORT_URL_REFUSED : err.reason === 'too-large' ? ErrorCode.IMPORT_TOO_LARGE : ErrorCode.IMPORT_SOURCE_UNREADABLE;
      throw new ImportError(code, err.message, { cause: err });
    }
  } else if (input.source.kind === 'destination') {
    const destination = await deps.db.destination.findUniqueOrThrow({ where: { id: input.source.destinationId } });
    const backend = await backendFor(deps, destination);
    try {
      if (!backend.openObject) throw new ImportError(ErrorCode.IMPORT_SOURCE_UNREADABLE, `${destination.provider} destinations cannot serve files`);
      let opened: { stream: Readable; size: number | null };
      try {
        opened = await backend.openObject(input.source.key, { signal });
      } catch (err) {
        if (err instanceof BackendNotFoundError) throw new ImportError(ErrorCode.IMPORT_SOURCE_UNREADABLE, `${JSON.stringify(input.source.key)} does not exist on destination ${destination.name}`, { cause: err });
        throw new ImportError(ErrorCode.IMPORT_SOURCE_UNREADABLE, `reading ${JSON.stringify(input.source.key)} from destination ${destination.name} failed: ${messageOf(err)}`, { cause: err });
      }
      if (opened.size !== null && opened.size > policy.maxBytes) {
        opened.stream.destroy();
        throw new ImportError(ErrorCode.IMPORT_TOO_LARGE, `the dump is ${opened.size} bytes, more than IMPORT_MAX_BYTES (${policy.maxBytes})`);
      }
      let done = 0;
      opened.stream.on('data', (chunk: Buffer) => {
        done += chunk.length;
        if (done > policy.maxBytes) opened.stream.destroy(new ImportError(ErrorCode.IMPORT_TOO_LARGE, `the dump is larger than IMPORT_MAX_BYTES (${policy.maxBytes} bytes)`));
        else onBytes(opened.size, done);
      });
      await pipeline(opened.stream, createWriteStream(part), { signal });
    } catch (err) {
      await rm(part, { force: true });
      throw err;
    } finally {
      await backend.close().catch(() => undefined);
    }
  } else {
    return;
  }
  await rename(part, file);
}

/** The job. Like a restore, an import is never retried automatically. */
export async function runImport(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op) return;
  const log = await deps.db.restoreLog.findFirstOrThrow({ where: { operationId }, include: { targetEnvironment: { include: { settings: true } } } });
  const target = log.targetEnvironment;
  const input = op.input as unknown as ImportJobInput;
  const file = importFile(policyOf(deps).dir, input.file);
  const progress = progressReporter(deps, operationId);
  const restoreId = restoreIdOf(log.id);
  try {
    await underLimits(deps, operationId, target.settings?.timeoutSeconds ?? 3600, jobSignal, async (signal) => {
      if (op.attempts > 1) await discardRestoreLeftovers(deps, log.id);
      if (input.source.kind !== 'upload') {
        progress.report({ phase: 'downloading', bytesDone: 0 });
        await fetchSource(deps, input, file, signal, (total, done) => progress.report({ bytesDone: done, bytesTotal: total }));
      }
      progress.report({ phase: 'detecting' });
      let format: DumpFormat;
      let compression: Awaited<ReturnType<typeof detectDump>>['compression'];
      try {
        ({ format, compression } = await detectDump(file));
      } catch (err) {
        if (!(err instanceof DumpFormatError)) throw err;
        throw new ImportError(err.reason === 'unknown' ? ErrorCode.IMPORT_FORMAT_UNKNOWN : ErrorCode.IMPORT_FAILED, err.message, { cause: err });
      }
      deps.logger.info({ operationId, format, compression }, 'import format detected');
      const url = await environmentDatabaseUrl(deps, target.id);
      if (!(await canCreateDatabase(url))) {
        // IN_PLACE cannot take plain SQL, and an import's IMPORT snapshot is taken before the swap.
        throw new ImportError(ErrorCode.IMPORT_FAILED, "the environment's database role may not create databases; an import loads into a new database and swaps it in");
      }
      if (input.createSafetySnapshot) {
        progress.report({ phase: 'safety-snapshot' });
        const safetyId = await takeSafetySnapshot(deps, target.id, ['DB'], signal, 'Before import');
        await deps.db.restoreLog.update({ where: { id: log.id }, data: { safetySnapshotId: safetyId } });
      }
      await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: 'RUNNING' } });
      const size = (await stat(file)).size;
      progress.report({ phase: 'loading', bytesDone: 0, bytesTotal: size });
      let read = 0;
      const raw = openDecompressed(file, compression, { signal, onRawBytes: (n) => ((read += n), progress.report({ bytesDone: read })) });
      const dump = format === 'plain' ? restrictedSql(raw) : raw;
      let prepared: PreparedDatabase;
      try {
        prepared = await prepareDatabase(url, dump, { strategy: 'SWAP', restoreId, format, signal });
      } catch (err) {
        if (signal.aborted) throw err;
        throw new ImportError(ErrorCode.IMPORT_FAILED, `loading the ${format} dump failed: ${messageOf(err)}`, { cause: err });
      }
      try {
        // The snapshot reports its bytes on its own operation; this one keeps the loading's count.
        progress.report({ phase: 'import-snapshot' });
        await takeImportSnapshot(deps, log.snapshotId!, target.id, withDatabase(url, prepared.tempName!), signal);
        if (signal.aborted) throw signal.reason;
      } catch (err) {
        await prepared.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'import rollback failed'));
        throw err;
      }
      // The short step, not cut by a stop (see runRestore).
      progress.report({ phase: 'swapping' });
      try {
        await prepared.commit();
      } catch (err) {
        await prepared.rollback().catch(() => undefined);
        throw err;
      }
      await deps.db.restoreLog.update({ where: { id: log.id }, data: { previousDatabaseName: prepared.previousName } });
    });
    await progress.flush();
    await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: 'SUCCEEDED', completedAt: deps.clock.now() } });
    await finishOperation(deps, operationId, 'SUCCEEDED');
    await removeImportFile(deps, input.file);
  } catch (err) {
    await progress.flush();
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      // Handed back like a restore: what was prepared goes, the dump file stays for the next run.
      await resetImportSnapshot(deps, log.snapshotId!);
      await handBackRestore(deps, log.id, operationId);
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    const message = messageOf(err);
    const code = err instanceof ImportError ? err.code : undefined;
    await failImportSnapshot(deps, log.snapshotId!, cancelled ? 'Cancelled' : message);
    await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: cancelled ? 'CANCELLED' : 'FAILED', error: message, completedAt: deps.clock.now() } });
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', message, code);
    await removeImportFile(deps, input.file);
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: target.organizationId, environmentId: target.id, operationId, type: 'RESTORE_FAILED', severity: 'CRITICAL', message: `Import into ${target.name} failed: ${message}` });
    }
  } finally {
    await deps.events.publish('environmentActivity', target.id, { kind: 'RESTORE', environmentId: target.id, subjectId: log.id });
  }
}

/** The IMPORT snapshot: a dump of the loaded database before it is swapped in, by runSnapshot under an operation of its own. */
async function takeImportSnapshot(deps: Deps, snapshotId: string, environmentId: string, databaseUrl: string, signal: AbortSignal): Promise<void> {
  const env = await deps.db.environment.findUniqueOrThrow({ where: { id: environmentId } });
  // RUNNING from the start, as the safety snapshot's: it has no job of its own.
  const op = await deps.db.operation.create({
    data: { organizationId: env.organizationId, environmentId: env.id, type: 'SNAPSHOT', snapshotId, phase: 'queued', status: 'RUNNING', heartbeatAt: deps.clock.now() },
  });
  try {
    await runSnapshot(deps, op.id, signal, { databaseUrl });
  } catch (err) {
    await deps.db.operation.delete({ where: { id: op.id } }).catch(() => undefined);
    throw err;
  }
  const done = await deps.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } });
  if (done.status !== 'READY') throw new Error(`the IMPORT snapshot failed, so the environment was left untouched: ${done.error ?? done.status}`);
}

/** A stopped import runs again from the start: its IMPORT snapshot waits again, as new. */
async function resetImportSnapshot(deps: Deps, snapshotId: string): Promise<void> {
  await deps.db.snapshot.update({ where: { id: snapshotId }, data: { status: 'CREATING', error: null } });
  await deps.db.snapshotCopy.updateMany({ where: { snapshotId }, data: { status: 'PENDING', repoSnapshotId: null, error: null } });
}

/** A failed import's IMPORT snapshot is failed too, unless it became READY (it then holds what the dump held). */
async function failImportSnapshot(deps: Deps, snapshotId: string, reason: string): Promise<void> {
  await deps.db.snapshot.updateMany({ where: { id: snapshotId, status: 'CREATING' }, data: { status: 'FAILED', error: reason } });
  await deps.db.snapshotCopy.updateMany({ where: { snapshotId, status: { in: ['PENDING', 'UPLOADING'] } }, data: { status: 'FAILED', error: reason } });
}
