/**
 * Where a LOCAL destination may live. A pseudo-filesystem (proc, sysfs, devtmpfs, cgroup…) is
 * not storage: writes there fail in odd ways, and a recursive mkdir under /proc never returns in
 * Node 20 (it spins in a libuv thread at 100% CPU). The mount table says which filesystem a path
 * is on, so that is what decides, not a guessed list of prefixes; /proc, /sys and /dev are refused
 * whatever is mounted there, since a container may mount them as tmpfs.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';

export const PSEUDO_FILESYSTEMS: ReadonlySet<string> = new Set([
  'proc', 'sysfs', 'devtmpfs', 'devpts', 'cgroup', 'cgroup2', 'debugfs', 'tracefs', 'securityfs', 'pstore', 'bpf',
  'configfs', 'fusectl', 'mqueue', 'binfmt_misc', 'autofs', 'efivarfs', 'selinuxfs', 'nsfs', 'hugetlbfs', 'rpc_pipefs',
]);

const SYSTEM_ROOTS = ['/proc', '/sys', '/dev'];

export interface Mount {
  mountPoint: string;
  fsType: string;
}

/** Parses /proc/self/mountinfo (proc(5)): the mount point is field 5, the type follows the " - " separator. */
export function parseMountInfo(text: string): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!after) continue;
    const mountPoint = before.split(' ')[4];
    const fsType = after.split(' ')[0];
    if (mountPoint && fsType) mounts.push({ mountPoint: unescape(mountPoint), fsType });
  }
  return mounts;
}

const under = (path: string, dir: string) => dir === '/' || path === dir || path.startsWith(`${dir}/`);

/** The mount a path is on: the longest mount point above it, the latest one where mounts stack. */
export function mountOf(mounts: Mount[], path: string): Mount | null {
  let best: Mount | null = null;
  for (const m of mounts) if (under(path, m.mountPoint) && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  return best;
}

/** The path with symlinks of its deepest existing ancestor resolved (the rest need not exist yet). */
async function resolvedPath(path: string): Promise<string> {
  const missing: string[] = [];
  let dir = resolve(path);
  for (;;) {
    try {
      return resolve(await realpath(dir), ...missing);
    } catch {
      const parent = dirname(dir);
      if (parent === dir) return resolve(path);
      missing.unshift(basename(dir));
      dir = parent;
    }
  }
}

/** Why a directory cannot hold a repository because of the filesystem it is on, or null. */
export async function pseudoFilesystemProblem(path: string, mountInfo?: string): Promise<string | null> {
  const paths = [...new Set([resolve(path), await resolvedPath(path)])];
  let mounts: Mount[] = [];
  try {
    mounts = parseMountInfo(mountInfo ?? (await readFile('/proc/self/mountinfo', 'utf8')));
  } catch {
    // Not Linux, or no /proc: only the fixed roots below apply.
  }
  for (const p of paths) {
    const root = SYSTEM_ROOTS.find((r) => under(p, r));
    if (root) return `is under ${root}, a system pseudo-filesystem, not storage`;
    const m = mountOf(mounts, p);
    if (m && PSEUDO_FILESYSTEMS.has(m.fsType)) return `is on a ${m.fsType} pseudo-filesystem (mounted at ${m.mountPoint}), not storage`;
  }
  return null;
}
