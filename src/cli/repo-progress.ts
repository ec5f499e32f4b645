/**
 * The one updating status line `backplane repo` draws on a terminal, and the number formats
 * its output shares.
 */

/** Bytes as a short human figure, binary units: `1.5 GiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/** Elapsed milliseconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60));
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Bytes per second over a duration, as `12.3 MiB/s`. */
export function formatRate(bytes: number, ms: number): string {
  return ms > 0 ? `${formatBytes(Math.round((bytes * 1000) / ms))}/s` : '-';
}

/** Describes one unit of progress; null draws nothing. */
export type ProgressText = (elapsedMs: number) => string;

/**
 * A single status line redrawn in place (carriage return + erase line) at most every
 * `intervalMs`, so a fast backup does not spend its time writing to the terminal. Inactive
 * when the stream is not a TTY: piped or captured stderr gets no control characters.
 */
export class ProgressLine {
  private last = 0;
  private drawn = false;
  private readonly started = Date.now();
  private pending: ProgressText | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly stream: NodeJS.WriteStream | null,
    private readonly intervalMs = 200,
  ) {}

  /** True when updates are drawn. */
  get active(): boolean {
    return this.stream !== null;
  }

  /** Schedules a redraw with the latest state; cheap to call on every engine callback. */
  update(text: ProgressText): void {
    if (!this.stream) return;
    this.pending = text;
    const now = Date.now();
    if (now - this.last >= this.intervalMs) {
      this.draw();
    } else if (!this.timer) {
      // Draw the final state of a burst too, not only its first update.
      this.timer = setTimeout(() => this.draw(), this.intervalMs - (now - this.last));
      this.timer.unref();
    }
  }

  private draw(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.stream || !this.pending) return;
    this.last = Date.now();
    const width = Math.max(20, (this.stream.columns || 80) - 1);
    let line = this.pending(this.last - this.started);
    if (line.length > width) line = line.slice(0, width - 1) + '…';
    this.stream.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  /** Erases the line; later output starts on a clean line. */
  done(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
    if (this.stream && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}

/** `done / total (pct%)` or just `done` when the total is unknown. */
export function ofTotal(done: number, total: number | undefined): string {
  if (!total) return formatBytes(done);
  const pct = Math.min(100, (done / total) * 100);
  return `${pct.toFixed(1)}% ${formatBytes(done)} / ${formatBytes(total)}`;
}
