import { describe, expect, it } from 'vitest';
import { ConflictError, ValidationError } from '../../src/domain/errors.ts';
import { checkRecoverable, type PitrArchive } from '../../src/services/pitr-archive.ts';
import { parseSegment, segmentOfLsn } from '../../src/sources/pitr-layout.ts';

const at = (s: number) => new Date(Date.UTC(2026, 11, 7, 3, 0, s));
const seg = (tli: number, n: number) => [tli, Math.floor(n / 256), n % 256].map((x) => x.toString(16).toUpperCase().padStart(8, '0')).join('');

/** Base backups at 10 s (WAL from segment 2) and 30 s (from 5); WAL snapshots every 10 s, one segment each, the last a .partial. */
function archive(overrides: Partial<PitrArchive> = {}): PitrArchive {
  return {
    sysid: '7',
    bases: [
      { snapshotId: 'b1', time: at(10), timeline: 1, startWal: seg(1, 2), endWal: seg(1, 2) },
      { snapshotId: 'b2', time: at(30), timeline: 1, startWal: seg(1, 5), endWal: seg(1, 5) },
    ],
    wal: [
      { snapshotId: 'w1', time: at(12), files: [seg(1, 1), seg(1, 2)] },
      { snapshotId: 'w2', time: at(20), files: [seg(1, 3)] },
      { snapshotId: 'w3', time: at(32), files: [seg(1, 4), seg(1, 5)] },
      { snapshotId: 'w4', time: at(40), files: [`${seg(1, 6)}.partial`] },
    ],
    ...overrides,
  };
}

function refusal(fn: () => unknown): ConflictError | ValidationError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConflictError || err instanceof ValidationError) return err;
    throw err;
  }
  throw new Error('not refused');
}

describe('checkRecoverable', () => {
  it('takes the newest base backup finished before the time and the WAL snapshots up to the first that reaches it', () => {
    const plan = checkRecoverable(archive(), at(35), at(50));
    expect(plan.base.snapshotId).toBe('b2');
    expect(plan.wal.map((w) => w.snapshotId)).toEqual(['w1', 'w2', 'w3', 'w4']);
    expect(plan.lastSegment).toBe(seg(1, 6));
    const early = checkRecoverable(archive(), at(15), at(50));
    expect(early.base.snapshotId).toBe('b1');
    expect(early.wal.map((w) => w.snapshotId)).toEqual(['w1', 'w2']);
  });

  it('refuses a time in the future, before the first base backup, after the newest WAL, and with no base backup at all', () => {
    expect(refusal(() => checkRecoverable(archive(), at(60), at(50)))).toBeInstanceOf(ValidationError);
    expect(refusal(() => checkRecoverable(archive(), at(10), at(50))).code).toBe('PITR_BEFORE_FIRST_BASE_BACKUP');
    expect(refusal(() => checkRecoverable(archive(), at(41), at(50))).code).toBe('PITR_AFTER_ARCHIVED_WAL');
    expect(refusal(() => checkRecoverable(archive({ bases: [] }), at(35), at(50))).code).toBe('PITR_NO_ARCHIVE');
  });

  it('refuses a time whose WAL has a missing segment after the base backup, and names it; a gap before the base backup does not matter', () => {
    const holed = archive();
    holed.wal[1] = { ...holed.wal[1], files: [] };
    const err = refusal(() => checkRecoverable(holed, at(25), at(50)));
    expect(err.code).toBe('PITR_IN_GAP');
    expect(err.message).toContain(seg(1, 3));
    // From the second base backup on, segment 3 is not needed.
    expect(checkRecoverable(holed, at(35), at(50)).base.snapshotId).toBe('b2');
  });

  it('refuses a time inside a gap the catalog window lists', () => {
    const window = { earliestRecoveryTime: at(10), latestRecoveryTime: at(40), gaps: [{ from: at(33), to: at(36), reason: 'streamer down' }] };
    const err = refusal(() => checkRecoverable(archive(), at(34), at(50), window));
    expect(err.code).toBe('PITR_IN_GAP');
    expect(err.message).toContain('streamer down');
    expect(checkRecoverable(archive(), at(37), at(50), window).base.snapshotId).toBe('b2');
  });

  it('follows a timeline switch: the new timeline continues the segment numbers', () => {
    const switched = archive();
    switched.wal[3] = { ...switched.wal[3], files: ['00000002.history', seg(2, 6), `${seg(2, 7)}.partial`] };
    expect(checkRecoverable(switched, at(38), at(50)).lastSegment).toBe(seg(2, 7));
  });
});

describe('layout names', () => {
  it('segment of an LSN, and parsing segment names', () => {
    expect(segmentOfLsn(1, '0/3000028')).toBe('000000010000000000000003');
    expect(segmentOfLsn(2, '1/FF000000')).toBe('0000000200000001000000FF');
    expect(parseSegment('0000000200000001000000FF.partial')).toEqual({ timeline: 2, number: 0x1ff, partial: true });
    expect(parseSegment('00000002.history')).toBeNull();
  });
});
