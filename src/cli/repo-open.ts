/**
 * Where `backplane repo` finds its repository and password: `--repo` or BACKPLANE_REPO (a
 * directory, `local:DIR`, or `s3:…` with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_DEFAULT_REGION), and `--password-file` or BACKPLANE_REPO_PASSWORD.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Backend } from '../destinations/backend.ts';
import { LocalBackend } from '../destinations/local.ts';
import { type KdfParams } from '../engine/api.ts';
import { repositoryKdf, TestKdfError } from '../domain/test-kdf.ts';
import { str, UsageError, type Values } from './repo-args.ts';

/** The repository location from --repo or BACKPLANE_REPO. */
export function repoLocation(values: Values, env: NodeJS.ProcessEnv): string {
  const loc = str(values, 'repo') ?? env.BACKPLANE_REPO;
  if (!loc) throw new UsageError('no repository given: use --repo LOCATION or set BACKPLANE_REPO');
  return loc;
}

/** A backend for a location string. */
export async function openBackend(location: string, values: Values, env: NodeJS.ProcessEnv): Promise<Backend> {
  if (location.startsWith('s3:')) {
    const cacert = str(values, 'cacert');
    const ca = cacert ? await readFile(cacert) : undefined;
    // The SDK prints a multi-line notice about the Node versions its future releases will need;
    // it tells a CLI user nothing actionable and breaks the one-line-on-failure contract.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    // Loaded only here: the AWS SDK takes ~100 ms to load, which local repositories never need.
    const { s3BackendFromLocation } = await import('../destinations/s3.ts');
    try {
      return s3BackendFromLocation(location, env, ca ? { ca } : {});
    } catch (err) {
      // Only the location and the credentials are checked here: both are the caller's to fix.
      throw new UsageError((err as Error).message);
    }
  }
  const dir = location.startsWith('local:') ? location.slice('local:'.length) : location;
  if (!dir) throw new UsageError('empty repository path');
  return new LocalBackend(resolve(dir));
}

/**
 * The password from --password-file (one trailing newline dropped, as restic does) or
 * BACKPLANE_REPO_PASSWORD. An empty password is refused: it would protect nothing.
 */
export async function repoPassword(values: Values, env: NodeJS.ProcessEnv): Promise<string> {
  const file = str(values, 'password-file');
  let password: string | undefined;
  if (file) {
    try {
      password = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(`cannot read --password-file: ${(err as Error).message}`);
    }
  } else {
    password = env.BACKPLANE_REPO_PASSWORD;
  }
  if (password === undefined) throw new UsageError('no password given: set BACKPLANE_REPO_PASSWORD or use --password-file FILE');
  if (password === '') throw new UsageError('the repository password is empty');
  return password;
}

/** scrypt parameters for new keys: the defaults; BACKPLANE_REPO_KDF only under tests (see test-kdf.ts). */
export function kdfParams(env: NodeJS.ProcessEnv): KdfParams {
  try {
    return repositoryKdf(env);
  } catch (err) {
    if (err instanceof TestKdfError) throw new UsageError(err.message);
    throw err;
  }
}
