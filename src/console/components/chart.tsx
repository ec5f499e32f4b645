import { bytes, duration } from '../format.ts';

interface Point {
  createdAt: string;
  addedBytes: string;
  durationMs?: number | null;
}

/**
 * Bytes each snapshot added to the repository (bars) and how long it took (line), oldest on the
 * left. Inline SVG: a chart library would weigh more than the whole console.
 */
export function SnapshotChart({ points }: { points: Point[] }) {
  const data = [...points].reverse();
  if (data.length === 0) return <p class="muted">No finished snapshot yet.</p>;
  const W = 600;
  const H = 160;
  const pad = 4;
  const maxBytes = Math.max(1, ...data.map((p) => Number(p.addedBytes)));
  const maxMs = Math.max(1, ...data.map((p) => p.durationMs ?? 0));
  const step = (W - 2 * pad) / data.length;
  const line = data
    .map((p, i) => `${(pad + step * (i + 0.5)).toFixed(1)},${(H - pad - ((p.durationMs ?? 0) / maxMs) * (H - 2 * pad)).toFixed(1)}`)
    .join(' ');
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label="Bytes added and duration per snapshot">
        {data.map((p, i) => {
          const h = (Number(p.addedBytes) / maxBytes) * (H - 2 * pad);
          return (
            <rect class="bar-added" x={pad + step * i + step * 0.15} width={step * 0.7} y={H - pad - h} height={h}>
              <title>{`${new Date(p.createdAt).toLocaleString()}: ${bytes(p.addedBytes)} added, ${duration(p.durationMs)}`}</title>
            </rect>
          );
        })}
        <polyline class="line-duration" points={line} fill="none" />
      </svg>
      <figcaption>
        <span class="key-added">■</span> bytes added (max {bytes(maxBytes)}) <span class="key-duration">—</span> duration (max {duration(maxMs)})
      </figcaption>
    </figure>
  );
}
