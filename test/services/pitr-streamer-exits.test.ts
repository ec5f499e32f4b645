import { describe, expect, it } from 'vitest';
import { archiveBreak, parseHistory } from '../../src/services/pitr-streamer.ts';

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
});
