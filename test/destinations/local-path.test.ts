import { describe, expect, it } from 'vitest';
import { mountOf, parseMountInfo, pseudoFilesystemProblem } from '../../src/destinations/local-path.ts';

// A mount table like a container's: cgroup and proc mounted away from the usual places.
const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  '40 27 0:38 / /srv/cg rw,relatime - cgroup2 cgroup2 rw',
  '41 27 0:39 / /mnt/other\\040proc rw,relatime - proc proc rw',
  '42 27 0:40 / /srv/data rw,relatime shared:5 - xfs /dev/vdb rw',
  '43 27 0:41 / /srv/data/stacked rw,relatime - sysfs sysfs rw',
].join('\n');

describe('pseudo-filesystems from the mount table', () => {
  it('parses mount points (with escapes) and types, and finds the deepest mount of a path', () => {
    const mounts = parseMountInfo(MOUNTINFO);
    expect(mounts).toContainEqual({ mountPoint: '/mnt/other proc', fsType: 'proc' });
    expect(mountOf(mounts, '/srv/data/x')?.fsType).toBe('xfs');
    expect(mountOf(mounts, '/srv/database')?.fsType).toBe('ext4');
    expect(mountOf(mounts, '/srv/data/stacked/x')?.fsType).toBe('sysfs');
  });

  it('refuses a path on a pseudo-filesystem wherever it is mounted, and accepts ordinary disks', async () => {
    expect(await pseudoFilesystemProblem('/srv/cg/backups', MOUNTINFO)).toMatch(/cgroup2 pseudo-filesystem/);
    expect(await pseudoFilesystemProblem('/mnt/other proc/1', MOUNTINFO)).toMatch(/proc pseudo-filesystem/);
    expect(await pseudoFilesystemProblem('/srv/data/stacked/repo', MOUNTINFO)).toMatch(/sysfs/);
    expect(await pseudoFilesystemProblem('/srv/data/repo', MOUNTINFO)).toBeNull();
    expect(await pseudoFilesystemProblem('/srv/cgroups-backup', MOUNTINFO)).toBeNull();
    // The system roots, whatever the table says (a container may mount /dev as tmpfs).
    expect(await pseudoFilesystemProblem('/dev/shm/repo', MOUNTINFO)).toMatch(/under \/dev/);
  });

  it('reads this machine\'s own table', async () => {
    expect(await pseudoFilesystemProblem('/proc/1/backplane')).toMatch(/pseudo-filesystem/);
    expect(await pseudoFilesystemProblem('/tmp/backplane-repo')).toBeNull();
  });
});
