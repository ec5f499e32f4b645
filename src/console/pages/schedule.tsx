/**
 * An environment's schedule: cron presets, the next five runs in the schedule's timezone
 * (computed with croner, as the server plans them), GFS retention per kind, and the retention
 * preview — which snapshots the draft policy would delete — shown before Save is offered.
 */
import { useClient, useMutation, useQuery } from '@urql/preact';
import { Cron } from 'croner';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ErrorBox, fromCombined, typedError, type ApiProblem } from '../components/errors.tsx';
import { when } from '../format.ts';
import { ConsolePreviewRetentionDocument, ConsoleScheduleDocument, ConsoleUpsertScheduleDocument, type ConsolePreviewRetentionQuery, type RetentionPolicyInput } from '../generated/graphql.ts';
import { useConsole } from '../state.ts';

const COUNTS = ['hourly', 'daily', 'weekly', 'monthly', 'maxAgeDays'] as const;
type Policy = Partial<Record<(typeof COUNTS)[number], number | null>>;

interface Draft {
  dbCron: string;
  fullCron: string;
  timezone: string;
  db: Policy;
  full: Policy;
}

export function nextRuns(expression: string, timezone: string, n = 5): Date[] | string {
  if (!expression.trim()) return [];
  try {
    return new Cron(expression, { timezone, mode: '5-part', paused: true }).nextRuns(n);
  } catch (err) {
    return (err as Error).message;
  }
}

function clean(p: Policy): RetentionPolicyInput {
  const out: RetentionPolicyInput = {};
  for (const k of COUNTS) if (typeof p[k] === 'number') out[k] = p[k];
  return out;
}

function CronField(props: { label: string; name: string; value: string; timezone: string; presets: Array<{ name: string; cron: string; description: string }>; onChange(v: string): void }) {
  const runs = nextRuns(props.value, props.timezone);
  return (
    <fieldset>
      <legend>{props.label}</legend>
      <select aria-label={`${props.label} preset`} value={props.presets.some((p) => p.cron === props.value) ? props.value : ''} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">Custom / none</option>
        {props.presets.map((p) => (
          <option value={p.cron}>
            {p.name} ({p.description})
          </option>
        ))}
      </select>
      <input name={props.name} placeholder="minute hour day month weekday" value={props.value} onInput={(e) => props.onChange(e.currentTarget.value)} />
      {typeof runs === 'string' ? (
        <p class="error">{runs}</p>
      ) : runs.length ? (
        <ol class="next-runs" data-next-runs={props.name}>
          {runs.map((d) => (
            <li>{when(d.toISOString(), props.timezone)}</li>
          ))}
        </ol>
      ) : null}
    </fieldset>
  );
}

function PolicyFields({ legend, value, onChange }: { legend: string; value: Policy; onChange(p: Policy): void }) {
  return (
    <fieldset class="policy">
      <legend>{legend}</legend>
      {COUNTS.map((k) => (
        <label>
          {k === 'maxAgeDays' ? 'max age (days)' : k}
          <input
            type="number"
            min={0}
            name={`${legend}-${k}`}
            value={value[k] ?? ''}
            onInput={(e) => onChange({ ...value, [k]: e.currentTarget.value === '' ? null : Number(e.currentTarget.value) })}
          />
        </label>
      ))}
    </fieldset>
  );
}

type Preview = Extract<ConsolePreviewRetentionQuery['previewRetention'], { __typename: 'RetentionPreview' }>;

export function SchedulePage({ environmentId }: { environmentId: string }) {
  const { abilities } = useConsole();
  const client = useClient();
  const [res] = useQuery({ query: ConsoleScheduleDocument, variables: { environmentId } });
  const [saving, save] = useMutation(ConsoleUpsertScheduleDocument);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [preview, setPreview] = useState<{ for: string; result: Preview } | null>(null);
  const [problem, setProblem] = useState<ApiProblem | null>(null);
  const [saved, setSaved] = useState(false);
  const schedule = res.data?.schedule;
  useEffect(() => {
    if (!res.data || draft) return;
    const strip = (p?: Policy | null): Policy => Object.fromEntries(COUNTS.map((k) => [k, p?.[k] ?? null]));
    setDraft({
      dbCron: schedule?.dbCron ?? '',
      fullCron: schedule?.fullCron ?? '',
      timezone: schedule?.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'UTC',
      db: strip(schedule?.dbRetention),
      full: strip(schedule?.fullRetention),
    });
  }, [res.data]);
  const draftKey = useMemo(() => JSON.stringify(draft), [draft]);
  const update = (d: Partial<Draft>) => {
    setDraft({ ...draft!, ...d });
    setSaved(false);
  };

  async function runPreview() {
    setProblem(null);
    const r = await client
      .query(ConsolePreviewRetentionDocument, { environmentId, policy: { db: clean(draft!.db), full: clean(draft!.full) } }, { requestPolicy: 'network-only' })
      .toPromise();
    const out = r.data?.previewRetention;
    const p = fromCombined(r.error) ?? typedError(out);
    if (p) return setProblem(p);
    if (out?.__typename === 'RetentionPreview') setPreview({ for: draftKey, result: out });
  }

  const presets = res.data?.cronPresets ?? [];
  const previewCurrent = preview?.for === draftKey;
  return (
    <section>
      <h1>
        Schedule · <a href={`#/env/${encodeURIComponent(environmentId)}`}>{res.data?.environment?.name ?? '…'}</a>
      </h1>
      <ErrorBox problem={fromCombined(res.error)} />
      {schedule ? (
        <p class="muted">
          Next database run {when(schedule.nextDbRunAt, schedule.timezone)}, next full run {when(schedule.nextFullRunAt, schedule.timezone)}
          {schedule.paused ? ' (paused)' : ''}
        </p>
      ) : res.data ? (
        <p class="muted">No schedule yet.</p>
      ) : null}
      {draft ? (
        <form
          class="schedule-form"
          onSubmit={async (e) => {
            e.preventDefault();
            if (!previewCurrent || !abilities.write) return;
            setProblem(null);
            const r = await save({
              input: {
                environmentId,
                dbCron: draft.dbCron.trim() || null,
                fullCron: draft.fullCron.trim() || null,
                timezone: draft.timezone,
                dbRetention: clean(draft.db),
                fullRetention: clean(draft.full),
              },
            });
            const out = r.data?.upsertSchedule;
            const p = fromCombined(r.error) ?? typedError(out);
            if (p) {
              const fields = out?.__typename === 'ValidationError' ? out.fields.map((f) => `${f.path.join('.')}: ${f.message}`).join('; ') : '';
              return setProblem(fields ? { ...p, message: `${p.message} (${fields})` } : p);
            }
            setSaved(true);
          }}
        >
          <label>
            Timezone
            <input name="timezone" value={draft.timezone} onInput={(e) => update({ timezone: e.currentTarget.value })} />
          </label>
          <CronField label="Database snapshots" name="dbCron" value={draft.dbCron} timezone={draft.timezone} presets={presets} onChange={(v) => update({ dbCron: v })} />
          <CronField label="Full snapshots" name="fullCron" value={draft.fullCron} timezone={draft.timezone} presets={presets} onChange={(v) => update({ fullCron: v })} />
          <PolicyFields legend="db" value={draft.db} onChange={(p) => update({ db: p })} />
          <PolicyFields legend="full" value={draft.full} onChange={(p) => update({ full: p })} />
          <ErrorBox problem={problem} />
          <button type="button" data-action="preview" onClick={() => void runPreview()}>
            Preview retention
          </button>
          {abilities.write ? (
            <button type="submit" class="write" data-action="save-schedule" disabled={!previewCurrent || saving.fetching} title={previewCurrent ? '' : 'Preview the retention first'}>
              Save schedule
            </button>
          ) : null}
          {saved ? <span id="schedule-saved"> Saved.</span> : null}
        </form>
      ) : null}
      {preview ? (
        <div class={`card preview ${previewCurrent ? '' : 'stale'}`} id="retention-preview">
          <h2>
            Retention preview: {preview.result.delete.length} to delete, {preview.result.keep.length} kept
          </h2>
          {!previewCurrent ? <p class="muted">The policy changed since: preview again before saving.</p> : null}
          <ul>
            {preview.result.delete.map((d) => (
              <li class="delete" data-snapshot={d.snapshot.id}>
                delete {d.snapshot.label ?? d.snapshot.kind.toLowerCase()} of {when(d.snapshot.createdAt)} <span class="muted">({d.rule.toLowerCase().replace(/_/g, ' ')})</span>
              </li>
            ))}
            {preview.result.keep.map((d) => (
              <li class="keep" data-snapshot={d.snapshot.id}>
                keep {d.snapshot.label ?? d.snapshot.kind.toLowerCase()} of {when(d.snapshot.createdAt)} <span class="muted">({d.rule.toLowerCase().replace(/_/g, ' ')})</span>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </section>
  );
}
