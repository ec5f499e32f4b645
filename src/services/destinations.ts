import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { BackendAccessError } from '../destinations/backend.ts';
import { pseudoFilesystemProblem } from '../destinations/local-path.ts';
import { explainAccessError, probeBackend, type ProbeResult } from '../destinations/probe.ts';
import { formatS3Location, s3ConnectionFor, type S3ProviderSettings } from '../destinations/s3-config.ts';
import type { Destination, Prisma } from '../generated/prisma/client.ts';
import { raiseAlert } from './alerts.ts';
import { recordAuditEvent } from './audit.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import { nameTakenOr } from './prisma-errors.ts';
import { createDestinationInput, destinationSettings, LOCATION_FIELDS, updateDestinationInput, type DestinationSettings } from './destination-settings.ts';
import { requireVisibleDestinations } from './destination-choice.ts';
import { backendFor } from './repositories.ts';
import { scheduleDestinationVerify } from './follow-ups.ts';
import { destinationWhere, type Viewer } from './viewer.ts';

export { destinationWhere };

/**
 * Destinations: where an organization's repositories live. A destination is a LOCAL directory or
 * a bucket (and key prefix) of an S3-compatible provider. Non-secret settings go in `config`;
 * credentials are sealed (`credentialsEncrypted`) and shown only redacted. Each destination
 * holds one restic repository, created on first use with a generated password that the API
 * reveals only to admins, and records every reveal as an AuditEvent.
 */

/** Reads one destination the viewer may see, or DESTINATION_NOT_FOUND. */
export async function getDestination(deps: Deps, viewer: Viewer, id: string): Promise<Destination> {
  const d = await deps.db.destination.findFirst({ where: destinationWhere(viewer, { id }) });
  if (!d) throw new NotFoundError(ErrorCode.DESTINATION_NOT_FOUND, 'Destination not found');
  return d;
}

function mask(value: string): string {
  return value.length <= 4 ? '****' : `****${value.slice(-4)}`;
}

/** Splits validated settings into the row's config, sealed credentials and their redacted form. */
function rowFields(deps: Deps, s: DestinationSettings) {
  if (s.provider === 'LOCAL') return { config: { path: s.path }, credentialsEncrypted: null, credentialsRedacted: undefined };
  const { provider: _p, accessKeyId, secretAccessKey, ...config } = s;
  // Resolving now turns settings the backend cannot use into a validation error, not a job failure.
  try {
    s3ConnectionFor({ ...(config as S3ProviderSettings), provider: s.provider });
  } catch (err) {
    throw ValidationError.field(['input'], (err as Error).message);
  }
  return {
    config,
    credentialsEncrypted: deps.secrets.seal(JSON.stringify({ accessKeyId, secretAccessKey })),
    credentialsRedacted: { accessKeyId: mask(accessKeyId), secretAccessKey: '********' },
  };
}

/** A LOCAL directory on a pseudo-filesystem is refused as input, before anything tries to write there. */
async function checkLocalPath(settings: DestinationSettings): Promise<void> {
  if (settings.provider !== 'LOCAL') return;
  const problem = await pseudoFilesystemProblem(settings.path);
  if (problem) throw ValidationError.field(['input', 'path'], problem);
}

export async function createDestination(deps: Deps, viewer: Viewer, raw: unknown): Promise<string> {
  const input = parseInput(createDestinationInput, raw);
  const { name: destinationName, verifyCron: cron, isDefault, ...settings } = input;
  await checkLocalPath(settings as DestinationSettings);
  const fields = rowFields(deps, settings as DestinationSettings);
  try {
    return await deps.db.$transaction(async (tx) => {
      const d = await tx.destination.create({
        data: {
          organizationId: viewer.organizationId,
          name: destinationName,
          provider: settings.provider,
          config: fields.config as Prisma.InputJsonValue,
          credentialsEncrypted: fields.credentialsEncrypted,
          credentialsRedacted: fields.credentialsRedacted,
          verifyCron: cron || null,
          isDefault: isDefault ?? false,
        },
      });
      if (cron) await scheduleDestinationVerify(deps, tx, d.id, cron);
      return d.id;
    });
  } catch (err) {
    nameTakenOr(err, 'destination');
  }
}

export async function updateDestination(deps: Deps, viewer: Viewer, id: string, raw: z.input<typeof updateDestinationInput>): Promise<string> {
  const input = parseInput(updateDestinationInput, raw);
  const current = await getDestination(deps, viewer, id);
  const { name: newName, accessKeyId, secretAccessKey, verifyCron: cron, isDefault, ...changes } = input;
  const config = current.config as Record<string, unknown>;
  const moved = LOCATION_FIELDS.some((f) => changes[f] !== undefined && changes[f] !== config[f]);
  if (moved && (await holdsSnapshots(deps, id))) {
    throw new ConflictError(ErrorCode.DESTINATION_IN_USE, 'This destination holds snapshots; its location cannot change (create another destination instead)');
  }
  let data: Prisma.DestinationUpdateInput = {};
  const settingsChanged = Object.values(changes).some((v) => v !== undefined) || accessKeyId !== undefined;
  if (settingsChanged) {
    const creds =
      accessKeyId !== undefined
        ? { accessKeyId, secretAccessKey }
        : current.credentialsEncrypted
          ? (JSON.parse(deps.secrets.open(current.credentialsEncrypted)) as Record<string, string>)
          : {};
    const defined = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined));
    const settings = parseInput(destinationSettings, { ...config, ...defined, ...creds, provider: current.provider });
    await checkLocalPath(settings);
    const fields = rowFields(deps, settings);
    data = {
      config: fields.config as Prisma.InputJsonValue,
      credentialsEncrypted: fields.credentialsEncrypted,
      credentialsRedacted: fields.credentialsRedacted,
      // New settings have not been tested yet.
      status: 'UNKNOWN',
      lastError: null,
      ...(moved ? { repositoryId: null } : {}),
    };
  }
  try {
    await deps.db.$transaction(async (tx) => {
      await tx.destination.update({ where: { id }, data: { ...data, ...(newName !== undefined ? { name: newName } : {}), ...(cron !== undefined ? { verifyCron: cron || null } : {}), ...(isDefault !== undefined ? { isDefault } : {}) } });
      if (cron !== undefined) await scheduleDestinationVerify(deps, tx, id, cron || null);
    });
  } catch (err) {
    nameTakenOr(err, 'destination');
  }
  return id;
}

/** Copies that still name data in the destination (or are being written there). */
async function holdsSnapshots(deps: Deps, destinationId: string): Promise<boolean> {
  const n = await deps.db.snapshotCopy.count({ where: { destinationId, status: { in: ['PENDING', 'UPLOADING', 'READY', 'DELETING'] } } });
  return n > 0;
}

/**
 * Deletes a destination. One that still holds snapshots is refused unless `detach`: then the
 * catalog forgets it (its copies, packs and blob cache) and the bucket or directory is left
 * exactly as it is, still readable with restic and the repository password. Snapshots whose
 * only copy was there are marked DELETED: Backplane can no longer reach their data.
 */
export async function deleteDestination(deps: Deps, viewer: Viewer, id: string, opts: { detach?: boolean } = {}): Promise<string> {
  await getDestination(deps, viewer, id);
  // Work under way on a snapshot with a copy here (not leftover PENDING rows of a cancelled job).
  const busy = await deps.db.operation.count({
    where: {
      status: { in: ['QUEUED', 'RUNNING'] },
      OR: [{ snapshot: { copies: { some: { destinationId: id } } } }, { type: 'COPY_SNAPSHOT', input: { path: ['destinationId'], equals: id } }],
    },
  });
  if (busy > 0) throw new ConflictError(ErrorCode.DESTINATION_IN_USE, 'A snapshot on this destination is being written, copied, verified, restored or deleted; try again when it is done');
  const ready = await deps.db.snapshotCopy.count({ where: { destinationId: id, status: { in: ['READY', 'DELETING'] } } });
  if (ready > 0 && !opts.detach) {
    throw new ConflictError(ErrorCode.DESTINATION_IN_USE, `This destination holds ${ready} snapshot(s); delete them first, or detach it (its data stays where it is)`);
  }
  await deps.db.$transaction(async (tx) => {
    const affected = await tx.snapshotCopy.findMany({ where: { destinationId: id }, select: { snapshotId: true } });
    await tx.snapshotCopy.deleteMany({ where: { destinationId: id } });
    const orphaned = await tx.snapshot.findMany({
      where: { id: { in: affected.map((a) => a.snapshotId) }, status: 'READY', copies: { none: { status: 'READY' } } },
      select: { id: true },
    });
    if (orphaned.length) {
      await tx.snapshot.updateMany({ where: { id: { in: orphaned.map((o) => o.id) } }, data: { status: 'DELETED', error: 'Its destination was detached; the data is still there, readable with restic' } });
    }
    await tx.destination.delete({ where: { id } });
  });
  return id;
}

/** Replaces an environment's destinations; the first one listed receives each snapshot first. */
export async function setEnvironmentDestinations(deps: Deps, viewer: Viewer, environmentId: string, destinationIds: string[]): Promise<string> {
  const env = await getEnvironment(deps, viewer, environmentId);
  const ids = [...new Set(destinationIds)];
  if (ids.length !== destinationIds.length) throw ValidationError.field(['input', 'destinationIds'], 'lists a destination twice');
  if (ids.length > 10) throw ValidationError.field(['input', 'destinationIds'], 'at most 10 destinations');
  await requireVisibleDestinations(deps, viewer, ids);
  const base = deps.clock.now().getTime();
  await deps.db.$transaction(async (tx) => {
    await tx.environmentDestination.deleteMany({ where: { environmentId: env.id } });
    // Order is kept through createdAt, which is how snapshots pick their first destination.
    for (const [i, destinationId] of ids.entries()) {
      await tx.environmentDestination.create({ data: { environmentId: env.id, destinationId, createdAt: new Date(base + i) } });
    }
  });
  return env.id;
}

/** The repository location as restic spells it (`-r`): a directory, or `s3:<endpoint>/<bucket>/<prefix>`. */
export function resticLocation(d: Pick<Destination, 'provider' | 'config'>): string {
  const config = d.config as Record<string, unknown>;
  if (d.provider === 'LOCAL') return String(config.path);
  return formatS3Location(s3ConnectionFor({ ...(config as unknown as S3ProviderSettings), provider: d.provider }));
}

/**
 * Probes a destination and records what it found; a failure raises DESTINATION_UNREACHABLE. A
 * local directory that does not answer within `timeoutMs` fails the probe rather than hanging it.
 */
export async function testDestination(deps: Deps, viewer: Viewer, id: string, signal?: AbortSignal, opts: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const d = await getDestination(deps, viewer, id);
  const backend = await backendFor(deps, d);
  let result: ProbeResult;
  try {
    result = await probeBackend(backend, signal, opts);
  } finally {
    await backend.close().catch(() => undefined);
  }
  await recordHealth(deps, d, result.ok ? null : result.error ?? 'failed');
  return result;
}

/** Records a destination's health; turning unhealthy raises one DESTINATION_UNREACHABLE alert. */
export async function recordHealth(deps: Deps, d: Destination, error: string | null): Promise<void> {
  await deps.db.destination.update({
    where: { id: d.id },
    data: { status: error ? 'UNREACHABLE' : 'HEALTHY', lastCheckedAt: deps.clock.now(), lastError: error },
  });
  if (error && d.status !== 'UNREACHABLE') {
    await raiseAlert(deps, { organizationId: d.organizationId, type: 'DESTINATION_UNREACHABLE', severity: 'CRITICAL', message: `Destination ${d.name} cannot be used: ${error}` });
  }
}

/**
 * Health from use: a job that could not reach a destination (or was refused) marks it as a failed
 * test would; one that worked marks it HEALTHY again. Other failures say nothing about health.
 */
export async function recordUse(deps: Deps, destinationId: string, err?: unknown): Promise<void> {
  if (err === undefined) {
    await deps.db.destination.updateMany({ where: { id: destinationId, status: { not: 'HEALTHY' } }, data: { status: 'HEALTHY', lastError: null, lastCheckedAt: deps.clock.now() } });
    return;
  }
  if (!(err instanceof BackendAccessError) || err.kind === 'IO') return;
  const d = await deps.db.destination.findUnique({ where: { id: destinationId } });
  if (d) await recordHealth(deps, d, explainAccessError(err).message);
}

/**
 * The repository password, for disaster recovery with the stock restic command. Admin only
 * (the resolver checks the scope) and recorded as an AuditEvent with the key that asked.
 */
export async function revealRepositoryPassword(deps: Deps, viewer: Viewer, id: string): Promise<{ password: string; repository: string; repositoryId: string | null }> {
  const d = await getDestination(deps, viewer, id);
  if (!d.repositoryPasswordEncrypted) {
    throw new ConflictError(ErrorCode.DESTINATION_NO_REPOSITORY, 'Nothing has been stored here yet: the repository and its password are created with the first snapshot');
  }
  await recordAuditEvent(deps.db, viewer, 'destination.reveal_repository_password', d.id);
  return { password: deps.secrets.open(d.repositoryPasswordEncrypted), repository: resticLocation(d), repositoryId: d.repositoryId };
}
