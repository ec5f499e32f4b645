import { useRef } from 'preact/hooks';
import type { ConsoleOperationFieldsFragment } from '../generated/graphql.ts';
import { bytes } from '../format.ts';

/**
 * One operation's progress as the API reports it: phase, percent, bytes and a rate computed from
 * the last two reports this component saw (the API sends the state, not the speed).
 */
export function OperationProgress({ op }: { op: ConsoleOperationFieldsFragment }) {
  const last = useRef<{ at: number; bytes: number; rate: number } | null>(null);
  const now = performance.now();
  const done = Number(op.bytesDone);
  if (!last.current || done < last.current.bytes) last.current = { at: now, bytes: done, rate: 0 };
  else if (done > last.current.bytes && now > last.current.at) {
    last.current = { at: now, bytes: done, rate: ((done - last.current.bytes) * 1000) / (now - last.current.at) };
  }
  const percent = op.percent ?? (op.status === 'SUCCEEDED' ? 100 : null);
  const running = op.status === 'RUNNING' || op.status === 'QUEUED';
  return (
    <div class={`progress status-${op.status.toLowerCase()}`} data-operation={op.id} data-status={op.status}>
      <div class="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent === null ? undefined : Math.round(percent)}>
        <div class="fill" style={{ width: `${percent ?? 0}%` }} />
      </div>
      <div class="progress-text">
        <span class="phase">{op.phase ?? op.status.toLowerCase()}</span>
        <span>{percent === null ? '…' : `${Math.round(percent)}%`}</span>
        <span>
          {bytes(op.bytesDone)}
          {op.bytesTotal ? ` / ${bytes(op.bytesTotal)}` : ''}
        </span>
        {running && last.current.rate > 0 ? <span>{bytes(last.current.rate)}/s</span> : null}
      </div>
    </div>
  );
}
