import { DEFAULT_KDF_PARAMS, type KdfParams } from '../engine/kdf.ts';

/**
 * BACKPLANE_REPO_KDF: cheaper scrypt parameters for new repository keys, so test suites do not
 * spend a second per key derivation. It is a test setting only: a repository's key is exactly
 * as strong as the parameters it was written with, forever, so the variable is refused unless
 * NODE_ENV=test (vitest sets that). `fast` is N=1024,r=8,p=1; `N,r,p` names them. The key file
 * records the parameters, so such repositories stay readable, by restic too.
 */
export const TEST_KDF_VARIABLE = 'BACKPLANE_REPO_KDF';

export class TestKdfError extends Error {
  override name = 'TestKdfError';
}

/** The scrypt parameters for new keys: the defaults, or the test setting where it is allowed. */
export function repositoryKdf(env: NodeJS.ProcessEnv = process.env): KdfParams {
  const spec = env[TEST_KDF_VARIABLE];
  if (!spec) return DEFAULT_KDF_PARAMS;
  if (env.NODE_ENV !== 'test') throw new TestKdfError(`${TEST_KDF_VARIABLE} weakens repository keys and is a test setting: refused unless NODE_ENV=test`);
  if (spec === 'fast') return { N: 1024, r: 8, p: 1 };
  const m = /^(\d+),(\d+),(\d+)$/.exec(spec);
  const [N, r, p] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  if (!m || N < 2 || (N & (N - 1)) !== 0 || r < 1 || p < 1) throw new TestKdfError(`${TEST_KDF_VARIABLE} must be "fast" or N,r,p with N a power of two`);
  return { N, r, p };
}
