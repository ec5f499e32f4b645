/**
 * How an operation's progress is shown: one JSON line per change (--json), a bar redrawn on one
 * line on a terminal, or plain lines (a phase change or each further 10%) when the output is a
 * file or a pipe, e.g. a CI log.
 */
import type { OperationState } from './watch.ts';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  // A rate under 1 KiB/s is a fraction of bytes: whole bytes are enough.
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

interface Sample {
  at: number;
  bytes: number;
}

/** Bytes per second over the last few seconds of the current phase. */
class Rate {
  private samples: Sample[] = [];
  add(bytes: number, at: number): void {
    const last = this.samples.at(-1);
    if (last && bytes < last.bytes) this.samples = []; // a new phase counts from zero
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && at - this.samples[0]!.at > 5_000) this.samples.shift();
  }
  perSecond(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at - first.at < 200) return undefined;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

export function progressLine(s: OperationState, rate?: number): string {
  const parts = [s.status === 'RUNNING' ? (s.phase ?? 'running') : s.status.toLowerCase()];
  const done = Number(s.bytesDone);
  const total = s.bytesTotal == null ? undefined : Number(s.bytesTotal);
  if (s.percent != null) {
    const width = 20;
    const full = Math.round((s.percent / 100) * width);
    parts.push(`[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${s.percent.toFixed(1).padStart(5)}%`);
  }
  if (done > 0 || total) parts.push(total ? `${formatBytes(done)}/${formatBytes(total)}` : formatBytes(done));
  if (rate && rate > 0) {
    parts.push(`${formatBytes(rate)}/s`);
    if (total && total > done) parts.push(`${formatDuration((total - done) / rate)} left`);
  }
  return parts.join('  ');
}

/** One --json line: the operation's state, its fields always in the same order. */
export function jsonEvent(s: OperationState) {
  return {
    event: 'operation',
    id: s.id,
    type: s.type,
    status: s.status,
    phase: s.phase ?? null,
    percent: s.percent ?? null,
    bytesDone: s.bytesDone,
    bytesTotal: s.bytesTotal ?? null,
    message: s.message ?? null,
    error: s.error ?? null,
    snapshot: s.snapshot ? { id: s.snapshot.id, status: s.snapshot.status } : null,
  };
}

export interface ProgressView {
  update(state: OperationState): void;
  /** A note on stderr between updates (e.g. reconnecting) that must not garble the bar. */
  note(text: string): void;
  end(): void;
}

export function createProgressView(
  out: NodeJS.WritableStream & { isTTY?: boolean },
  err: NodeJS.WritableStream,
  opts: { json: boolean; now?: () => number },
): ProgressView {
  const now = opts.now ?? Date.now;
  const rate = new Rate();
  let last = '';
  let drawn = false;
  let plainKey = '';
  const clear = () => {
    if (drawn) out.write('\r\x1b[2K');
    drawn = false;
  };
  return {
    update(state) {
      const line = JSON.stringify(jsonEvent(state));
      // The query and the subscription list fields in different orders: compare in a fixed one.
      if (line === last) return;
      last = line;
      if (opts.json) {
        out.write(`${line}\n`);
        return;
      }
      rate.add(Number(state.bytesDone), now());
      const text = progressLine(state, rate.perSecond());
      if (out.isTTY) {
        out.write(`\r\x1b[2K${text}`);
        drawn = true;
        return;
      }
      const step = `${text.split(' ')[0]} ${state.percent == null ? '' : Math.floor(state.percent / 10)}`;
      if (step !== plainKey) out.write(`${text}\n`);
      plainKey = step;
    },
    note(text) {
      clear();
      err.write(`${text}\n`);
    },
    end() {
      if (drawn) out.write('\n');
      drawn = false;
    },
  };
}
