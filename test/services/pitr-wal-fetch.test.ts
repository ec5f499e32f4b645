import { describe, expect, it } from 'vitest';
import type { RecoveryPlan } from '../../src/services/pitr-archive.ts';
import { walFilesToFetch } from '../../src/services/pitr-wal-fetch.ts';

const seg = (tli: number, n: number) => [tli, Math.floor(n / 256), n % 256].map((x) => x.toString(16).toUpperCase().padStart(8, '0')).join('');
const at = (s: number) => new Date(Date.UTC(2026, 11, 7, 3, 0, s));

function plan(startWal: string, wal: string[][]): Pick<RecoveryPlan, 'base' | 'wal'> {
  return {
    base: { snapshotId: 'b', time: at(0), timeline: 1, startWal, endWal: startWal },
    wal: wal.map((files, i) => ({ snapshotId: `w${i + 1}`, time: at(i + 1), files })),
  };
}

describe('walFilesToFetch', () => {
  it('takes each name from the last snapshot holding it, and leaves out snapshots of stale partials only', () => {
    const p = plan(seg(1, 3), [
      [`${seg(1, 3)}.partial`],
      [`${seg(1, 3)}.partial`],
      [seg(1, 3), `${seg(1, 4)}.partial`],
      [`${seg(1, 4)}.partial`],
      [`${seg(1, 4)}.partial`],
    ]);
    expect(walFilesToFetch(p)).toEqual([
      { snapshotId: 'w3', files: [seg(1, 3)] },
      { snapshotId: 'w5', files: [`${seg(1, 4)}.partial`] },
    ]);
  });

  it('leaves out segments before the base backup start, keeps history files and a completed segment over its partial', () => {
    const p = plan(seg(2, 5), [
      [seg(1, 1), seg(1, 2), seg(1, 3)],
      [seg(1, 4), '00000002.history', `${seg(2, 5)}.partial`],
      [seg(2, 5)],
    ]);
    expect(walFilesToFetch(p)).toEqual([
      { snapshotId: 'w2', files: ['00000002.history'] },
      { snapshotId: 'w3', files: [seg(2, 5)] },
    ]);
  });

  it('keeps only the newest partial whose segment is not complete, as finishWalFolder would', () => {
    const p = plan(seg(1, 1), [[seg(1, 1), `${seg(1, 2)}.partial`], [`${seg(1, 3)}.partial`]]);
    expect(walFilesToFetch(p)).toEqual([
      { snapshotId: 'w1', files: [seg(1, 1)] },
      { snapshotId: 'w2', files: [`${seg(1, 3)}.partial`] },
    ]);
  });
});
