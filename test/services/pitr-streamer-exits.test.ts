import { describe, expect, it } from 'vitest';
import { archiveBreak } from '../../src/services/pitr-streamer.ts';
import { lastSegmentOnPath, parseHistory } from '../../src/sources/pitr-layout.ts';

describe('what a pg_receivewal exit means for the archive', () => {
  it('WAL the server removed is MISSING_WAL', () => {
    const err = 'pg_receivewal exited with code 1: pg_receivewal: error: unexpected termination of replication stream: ERROR:  requested WAL segment 000000010000000000000003 has already been removed';
    expect(archiveBreak(err)).toEqual({ reason: 'MISSING_WAL', detail: err });
  });

  it('a timeline that forked before the spool is TIMELINE_SWITCH', () => {
    const err = `pg_receivewal exited with code 1: ERROR:  requested starting point 0/C000000 on timeline 2 is not in this server's history\nDETAIL:  This server's history forked from timeline 2 at 0/A00BDC0.`;
    expect(archiveBreak(err)?.reason).toBe('TIMELINE_SWITCH');
  });

  it('a lost connection or a signal breaks nothing: the streamer restarts', () => {
    expect(archiveBreak('pg_receivewal exited with code 1: pg_receivewal: error: connection to server at "127.0.0.1", port 5432 failed: Connection refused')).toBeNull();
    expect(archiveBreak('')).toBeNull();
  });
});

describe('timeline history files', () => {
  it('reads each parent timeline and where its child left it, comments aside', () => {
    const text = '1\t0/3000108\tno recovery target specified\n\n2\t0/A00BDC0\tno recovery target specified\n';
    expect(parseHistory(text)).toEqual([
      { parent: 1, switchLsn: '0/3000108' },
      { parent: 2, switchLsn: '0/A00BDC0' },
    ]);
    expect(parseHistory('# a comment\n')).toEqual([]);
  });

  it('a recovery to the end of the archive must reach the last segment of the timeline it follows, not one of a branch it left', () => {
    const seg = (tli: number, n: number) => [tli, Math.floor(n / 256), n % 256].map((x) => x.toString(16).toUpperCase().padStart(8, '0')).join('');
    // Timeline 3 went on to segment 12 after timeline 4 left it in segment 10 (the archive holds
    // commits the promoted server never had): recovery follows timeline 4, which reaches 11.
    const forked = new Map([[4, '1\t0/3000108\tx\n2\t0/8000000\tx\n3\t0/A00BDC0\tx\n']]);
    expect(lastSegmentOnPath([8, 9, 10, 11, 12].map((n) => seg(3, n)).concat([seg(4, 10), seg(4, 11)]), forked)).toBe(11);
    // Timeline 1 past the switch point is never read; up to it, it is.
    expect(lastSegmentOnPath([seg(1, 3), seg(1, 4), seg(1, 5), seg(1, 6)], new Map([[2, '1\t0/5000100\tx\n']]))).toBe(5);
    // No history: the one timeline there is.
    expect(lastSegmentOnPath([seg(1, 2), seg(1, 3), seg(1, 5)], new Map())).toBe(5);
  });
});

