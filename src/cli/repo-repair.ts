/**
 * `backplane repo repair`: reads every pack, drops the damaged ones from the index (their good
 * blobs are salvaged into new packs) and reports which snapshots lost data. Those snapshots stay
 * in the repository: a later backup of the same content writes the lost blobs again and makes
 * them whole; `forget` and `prune` remove the ones that cannot be.
 */
import { repairPacks, type RepairResult } from '../engine/api.ts';
import { UsageError } from './repo-args.ts';
import type { Command } from './repo-context.ts';
import { formatDuration } from './repo-progress.ts';

function repairSummary(r: RepairResult, dryRun: boolean): string {
  const lines = [`checked ${r.packsChecked} packs`];
  for (const d of r.damaged) {
    lines.push(`${dryRun ? 'damaged' : 'dropped'} pack ${d.packId.slice(0, 12)}: ${d.reason}; ${d.lost.length} blob(s) lost${dryRun ? '' : `, ${d.salvaged} salvaged`}`);
  }
  for (const id of r.damagedSnapshots) lines.push(`snapshot ${id.slice(0, 8)} lost data`);
  if (r.damaged.length === 0) lines.push('no damaged packs found');
  else if (!dryRun) lines.push(`index rewritten (${r.indexFilesReplaced} index file(s) replaced); back up the same data again to restore lost blobs`);
  return lines.join('\n');
}

export const repairCommand: Command = {
  usage: 'repair [--dry-run]',
  summary: 'read every pack and drop damaged ones from the index, salvaging their good blobs',
  description:
    'Exits 1 when a snapshot lost data (with --dry-run: when any pack is damaged), else 0. The snapshots\n' +
    'listed reference blobs that are gone until a backup of the same content writes them again; `forget`\n' +
    'and `prune` remove the ones that cannot be made whole, after which `check --read-data` passes.',
  options: { 'dry-run': { type: 'boolean', short: 'n', help: 'report damage without changing the repository' } },
  async run(ctx) {
    if (ctx.positionals.length) throw new UsageError('repair takes no arguments');
    const dryRun = ctx.values['dry-run'] === true;
    const repo = await ctx.open();
    const result = await repairPacks(repo, {
      dryRun,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress.update((ms) => `[${formatDuration(ms)}] read ${p.packsDone}/${p.packsTotal} packs`),
    });
    ctx.progress.done();
    ctx.print({ ...result, dryRun }, () => (dryRun ? 'dry run: ' : '') + repairSummary(result, dryRun));
    return (dryRun ? result.damaged.length : result.damagedSnapshots.length) === 0 ? 0 : 1;
  },
};
