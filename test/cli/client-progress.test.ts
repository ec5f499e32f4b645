/**
 * How `--wait` shows an operation: the bar's content (phase, percent, bytes, rate, time left),
 * one redrawn line on a terminal, plain lines in a log, one JSON line per change.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createProgressView, formatBytes, formatDuration, progressLine } from '../../src/cli/client/progress.ts';
import type { OperationState } from '../../src/cli/client/watch.ts';

const MiB = 1 << 20;
function state(over: Partial<OperationState>): OperationState {
  return { id: 'op1', type: 'SNAPSHOT', status: 'RUNNING', phase: 'dumping', message: null, bytesDone: '0', bytesTotal: null, percent: null, error: null, snapshot: { id: 's1', status: 'CREATING' }, ...over };
}

function sink(isTTY: boolean) {
  const stream = Object.assign(new PassThrough(), { isTTY });
  let text = '';
  stream.on('data', (d) => (text += d));
  return { stream, text: () => text };
}

describe('progress of --wait', () => {
  it('shows a byte count or rate under 1 KiB in whole bytes', () => {
    expect([formatBytes(48.08097849008857), formatBytes(0), formatBytes(1023.6), formatBytes(1536)]).toEqual(['48 B', '0 B', '1024 B', '1.5 KiB']);
  });

  it('shows phase, percent, bytes, rate and time left', () => {
    const line = progressLine(state({ phase: 'uploading', bytesDone: String(30 * MiB), bytesTotal: String(100 * MiB), percent: 30 }), 10 * MiB);
    expect(line).toBe('uploading  [######..............]  30.0%  30.0 MiB/100.0 MiB  10.0 MiB/s  0:07 left');
    expect(progressLine(state({ status: 'QUEUED', phase: 'queued' }))).toBe('queued');
    expect(formatDuration(3725)).toBe('1:02:05');
  });

  it('redraws one line on a terminal, with the rate measured between updates', () => {
    const out = sink(true);
    const err = sink(false);
    let now = 0;
    const view = createProgressView(out.stream, err.stream, { json: false, now: () => now });
    view.update(state({ bytesDone: '0', bytesTotal: String(100 * MiB), percent: 0 }));
    now = 2_000;
    view.update(state({ bytesDone: String(40 * MiB), bytesTotal: String(100 * MiB), percent: 40 }));
    view.note('backplane: connection lost; reconnecting in 0.25s');
    now = 5_000;
    view.update(state({ status: 'SUCCEEDED', phase: 'done', bytesDone: String(100 * MiB), bytesTotal: String(100 * MiB), percent: 100 }));
    view.end();
    const frames = out.text().split('\r\x1b[2K');
    expect(frames[2]).toBe('dumping  [########............]  40.0%  40.0 MiB/100.0 MiB  20.0 MiB/s  0:03 left');
    // The note cleared the bar first and went to stderr; only the end adds a newline to stdout.
    expect(frames[3]).toBe('');
    expect(err.text()).toBe('backplane: connection lost; reconnecting in 0.25s\n');
    expect(out.text().endsWith('succeeded  [####################] 100.0%  100.0 MiB/100.0 MiB  20.0 MiB/s\n')).toBe(true);
    expect(out.text().split('\n')).toHaveLength(2);
  });

  it('writes plain lines when not on a terminal: each phase, and each further 10%', () => {
    const out = sink(false);
    const view = createProgressView(out.stream, sink(false).stream, { json: false });
    // Queued, then picked up by a worker but not started: the same words, one line.
    view.update(state({ status: 'QUEUED', phase: 'queued' }));
    view.update(state({ phase: 'queued' }));
    for (const percent of [0, 3, 7, 12, 15, 31]) view.update(state({ bytesDone: String(percent * MiB), bytesTotal: String(100 * MiB), percent }));
    view.update(state({ phase: 'finalizing', bytesDone: String(100 * MiB), bytesTotal: String(100 * MiB), percent: 100 }));
    view.end();
    expect(out.text()).not.toContain('\r');
    expect(out.text().trimEnd().split('\n').map((l) => /^(\S+)(?:\s+(\[[#.]+\]))?/.exec(l)!.slice(1).join(' ').trim())).toEqual([
      'queued',
      'dumping [....................]',
      'dumping [##..................]',
      'dumping [######..............]',
      'finalizing [####################]',
    ]);
  });

  it('writes one JSON line per change, the same state in another field order only once', () => {
    const out = sink(false);
    const view = createProgressView(out.stream, sink(false).stream, { json: true });
    const a = state({ status: 'QUEUED', phase: 'queued' });
    const reordered = Object.fromEntries(Object.entries(a).reverse()) as OperationState;
    view.update(a);
    view.update(reordered);
    view.update(state({ bytesDone: '5', percent: 1 }));
    const lines = out.text().trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.event, l.status, l.bytesDone])).toEqual([
      ['operation', 'QUEUED', '0'],
      ['operation', 'RUNNING', '5'],
    ]);
    expect(Object.keys(lines[0])).toEqual(['event', 'id', 'type', 'status', 'phase', 'percent', 'bytesDone', 'bytesTotal', 'message', 'error', 'snapshot']);
  });
});
