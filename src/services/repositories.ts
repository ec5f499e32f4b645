import { randomBytes } from 'node:crypto';
import { BackendAccessError, type Backend } from '../destinations/backend.ts';
import { countingBackend } from '../destinations/io-tally.ts';
import { pseudoFilesystemProblem } from '../destinations/local-path.ts';
import { LocalBackend } from '../destinations/local.ts';
import type { S3BackendOptions } from '../destinations/s3.ts';
import { s3ConnectionFor, type S3ProviderSettings } from '../destinations/s3-config.ts';
import { repositoryKdf } from '../domain/test-kdf.ts';
import { removeStaleLocks, Repository, RepositoryNotFoundError } from '../engine/api.ts';
import type { Destination } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';

/**
 * Turns a Destination row into an open engine Repository. The repository is created on first use
 * with a generated password, sealed in the catalog; the password never leaves this module except
 * through an explicit, audited reveal.
 */


/**
 * The storage backend a destination row describes. The S3 backend (and with it the AWS SDK, a
 * few MiB of code in every thread that loads it) is loaded only for a destination that needs it.
 */
export async function backendFor(deps: Deps, destination: Destination, extra: Partial<S3BackendOptions> = {}): Promise<Backend> {
  const config = destination.config as Record<string, unknown>;
  if (destination.provider === 'LOCAL') return new LocalBackend(String(config.path));
  const credentials = destination.credentialsEncrypted
    ? (JSON.parse(deps.secrets.open(destination.credentialsEncrypted)) as { accessKeyId: string; secretAccessKey: string })
    : { accessKeyId: '', secretAccessKey: '' };
  const connection = s3ConnectionFor({ ...(config as unknown as S3ProviderSettings), provider: destination.provider });
  // A self-hosted endpoint (MINIO, CUSTOM) may use a private CA, kept in the config as PEM.
  const ca = typeof config.caCertificate === 'string' ? config.caCertificate : undefined;
  const { S3Backend } = await import('../destinations/s3.ts');
  return new S3Backend({ ...connection, credentials, ca, ...extra });
}

/** The destination's repository password, generated (and stored sealed) on first use. */
async function repositoryPassword(deps: Deps, destination: Destination): Promise<{ password: string; fresh: boolean }> {
  if (destination.repositoryPasswordEncrypted) return { password: deps.secrets.open(destination.repositoryPasswordEncrypted), fresh: false };
  const password = randomBytes(32).toString('base64url');
  // Two workers may race here: only the first password is kept, and both use it.
  await deps.db.destination.updateMany({
    where: { id: destination.id, repositoryPasswordEncrypted: null },
    data: { repositoryPasswordEncrypted: deps.secrets.seal(password) },
  });
  const row = await deps.db.destination.findUniqueOrThrow({ where: { id: destination.id } });
  const stored = deps.secrets.open(row.repositoryPasswordEncrypted!);
  return { password: stored, fresh: stored === password };
}

export interface OpenedRepository {
  repo: Repository;
  backend: Backend;
  close(): Promise<void>;
}

/** How long a job waits for a conflicting repository lock before it fails (restic's --retry-lock). */
export const REPOSITORY_LOCK_WAIT_MS = 30 * 60_000;

/** Opens a destination's repository, initialising it the first time. */
export async function openRepository(deps: Deps, destinationId: string, signal?: AbortSignal): Promise<OpenedRepository> {
  const destination = await deps.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  if (destination.provider === 'LOCAL') {
    // A row from before createDestination refused these: creating the repository there would never return.
    const problem = await pseudoFilesystemProblem(String((destination.config as { path?: unknown }).path));
    if (problem) throw new BackendAccessError('UNREACHABLE', `The directory of destination ${destination.name} ${problem}`);
  }
  const backend = countingBackend(await backendFor(deps, destination), destination.id);
  try {
    const { password } = await repositoryPassword(deps, destination);
    const openOrInit = async (): Promise<Repository> => {
      try {
        return await Repository.open(backend, password, { signal });
      } catch (err) {
        if (!(err instanceof RepositoryNotFoundError)) throw err;
        // A repository that existed and is gone (bucket emptied, directory moved) is an error to
        // report, never a reason to start an empty one in its place.
        if (destination.repositoryId) throw err;
        return Repository.init(backend, password, { kdf: repositoryKdf(), open: { signal } });
      }
    };
    let repo: Repository;
    if (destination.repositoryId) {
      repo = await openOrInit();
    } else {
      // Two jobs opening a new destination at once (a base backup beside the WAL streamer) would
      // both init it: each writes its own master key, and the config one wrote fails the other's
      // MAC. The first use is serialized on the destination instead.
      repo = await deps.db.$transaction(
        async (tx) => {
          await tx.$queryRawUnsafe('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))::text', `repository-init:${destination.id}`);
          const r = await openOrInit();
          await tx.destination.update({ where: { id: destination.id }, data: { repositoryId: r.config.id } });
          return r;
        },
        { timeout: 120_000, maxWait: 120_000 },
      );
    }
    await clearStaleLocks(deps, destination.id, repo, signal);
    // A job meeting another's lock (a prune's exclusive one, or a prune meeting running backups)
    // waits for it rather than failing; the job that opened the repository may say so too.
    let logged = false;
    repo.lockWait = {
      ms: REPOSITORY_LOCK_WAIT_MS,
      onWait: (holder) => {
        if (!logged) deps.logger.info({ destinationId, holder }, 'waiting for the repository lock');
        logged = true;
      },
    };
    return { repo, backend, close: () => repo.close() };
  } catch (err) {
    await backend.close().catch(() => undefined);
    throw err;
  }
}

/**
 * For forgetting what a job itself wrote and no catalog row names yet (a partial or earlier
 * attempt's snapshot): no one reads it, so no lock to wait for (a cancel's clean-up waiting on
 * another environment's backup to the same repository would hold the cancel).
 */
export const OWN_WRITES = { lock: false } as const;

/** Tells an operation's watchers while its job waits for another's repository lock (`null`: it got it). */
export function reportLockWaits(repo: Repository, report: (message: string | null) => void): void {
  repo.lockWait = { ...repo.lockWait, onWait: (holder) => report(`Waiting for the repository lock: ${holder}`), onTaken: () => report(null) };
}

/**
 * A killed process leaves its lock file behind, and stock restic then refuses the repository
 * (`check`, `prune`) until someone runs `restic unlock`, which would break disaster recovery
 * with restic alone. So every job clears the locks restic itself calls stale (not refreshed for
 * 30 minutes, or held by a process of this host that is gone) before it works; live ones stay.
 * A failure here never fails the job: the locks are a courtesy to restic, not ours to need.
 */
async function clearStaleLocks(deps: Deps, destinationId: string, repo: Repository, signal?: AbortSignal): Promise<void> {
  try {
    const removed = await removeStaleLocks(repo, false, { keepUnreadable: true, signal });
    if (removed) deps.logger.warn({ destinationId, removed }, 'removed stale repository locks');
  } catch (err) {
    if (signal?.aborted) throw err;
    deps.logger.warn({ err, destinationId }, 'could not clear stale repository locks');
  }
}

/** Clears stale locks in every repository the catalog knows (a worker's start: see clearStaleLocks). */
export async function clearStaleLocksEverywhere(deps: Deps, signal?: AbortSignal): Promise<void> {
  const destinations = await deps.db.destination.findMany({ where: { repositoryId: { not: null } }, select: { id: true } });
  for (const d of destinations) {
    if (signal?.aborted) return;
    // Opening clears them; a destination that cannot be opened now is cleared by its next job.
    await openRepository(deps, d.id, signal).then(
      (o) => o.close(),
      (err: unknown) => deps.logger.warn({ err, destinationId: d.id }, 'could not open a repository to clear its stale locks'),
    );
  }
}
