import { randomBytes } from 'node:crypto';
import type { Backend } from '../destinations/backend.ts';
import { LocalBackend } from '../destinations/local.ts';
import { S3Backend, s3ConnectionFor, type S3BackendOptions, type S3ProviderSettings } from '../destinations/s3.ts';
import { repositoryKdf } from '../domain/test-kdf.ts';
import { Repository, RepositoryNotFoundError } from '../engine/api.ts';
import type { Destination } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';

/**
 * Turns a Destination row into an open engine Repository. The repository is created on first use
 * with a generated password, sealed in the catalog; the password never leaves this module except
 * through an explicit, audited reveal.
 */


/** The storage backend a destination row describes. */
export function backendFor(deps: Deps, destination: Destination, extra: Partial<S3BackendOptions> = {}): Backend {
  const config = destination.config as Record<string, unknown>;
  if (destination.provider === 'LOCAL') return new LocalBackend(String(config.path));
  const credentials = destination.credentialsEncrypted
    ? (JSON.parse(deps.secrets.open(destination.credentialsEncrypted)) as { accessKeyId: string; secretAccessKey: string })
    : { accessKeyId: '', secretAccessKey: '' };
  const connection = s3ConnectionFor({ ...(config as unknown as S3ProviderSettings), provider: destination.provider });
  // A self-hosted endpoint (MINIO, CUSTOM) may use a private CA, kept in the config as PEM.
  const ca = typeof config.caCertificate === 'string' ? config.caCertificate : undefined;
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

/** Opens a destination's repository, initialising it the first time. */
export async function openRepository(deps: Deps, destinationId: string, signal?: AbortSignal): Promise<OpenedRepository> {
  const destination = await deps.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  const backend = backendFor(deps, destination);
  try {
    const { password } = await repositoryPassword(deps, destination);
    let repo: Repository;
    try {
      repo = await Repository.open(backend, password, { signal });
    } catch (err) {
      if (!(err instanceof RepositoryNotFoundError)) throw err;
      // A repository that existed and is gone (bucket emptied, directory moved) is an error to
      // report, never a reason to start an empty one in its place.
      if (destination.repositoryId) throw err;
      repo = await Repository.init(backend, password, { kdf: repositoryKdf(), open: { signal } });
    }
    if (!destination.repositoryId) {
      await deps.db.destination.update({ where: { id: destination.id }, data: { repositoryId: repo.config.id } });
    }
    return { repo, backend, close: () => repo.close() };
  } catch (err) {
    await backend.close().catch(() => undefined);
    throw err;
  }
}
