import { randomBytes } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../engine/api.ts';
import type { Deps } from './deps.ts';

/**
 * The files importDump keeps under BACKPLANE_HOME/imports, named so that a sweep after a crash
 * knows whose each one is:
 * - `upload-<pid>-<random>.part`: an upload being received by the API process `<pid>`;
 * - `import-<token>.dump`: the dump of the import whose Operation input names `<token>` (an
 *   upload moved there by the mutation, or what the job fetched from a URL or destination).
 * A dump whose import is no longer QUEUED or RUNNING, or that no import names, goes.
 */

/** Imports whose dump file was made less than this long ago are left alone: their mutation may not have committed yet. */
const YOUNG_MS = 10 * 60_000;

export const newImportToken = () => randomBytes(12).toString('hex');

export function importFile(dir: string, token: string): string {
  return path.join(dir, `import-${token}.dump`);
}

export function uploadFile(dir: string): string {
  return path.join(dir, `upload-${process.pid}-${randomBytes(8).toString('hex')}.part`);
}

/** Removes the dump of one import (after it ended, whichever way). */
export async function removeImportFile(deps: Deps, token: string | undefined): Promise<void> {
  if (!deps.imports || !token) return;
  await rm(importFile(deps.imports.dir, token), { force: true });
  await rm(importFile(deps.imports.dir, token) + '.part', { force: true });
}

/**
 * Removes what crashed processes and finished imports left under the imports folder: uploads of
 * API processes that are gone (on this host), dumps no queued or running import needs. Returns the names removed.
 */
export async function sweepImportFiles(deps: Deps): Promise<string[]> {
  if (!deps.imports) return [];
  const dir = deps.imports.dir;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const live = await deps.db.operation.findMany({ where: { type: 'IMPORT', status: { in: ['QUEUED', 'RUNNING'] } }, select: { input: true } });
  const needed = new Set(live.map((o) => (o.input as { file?: string } | null)?.file).filter(Boolean));
  const removed: string[] = [];
  const now = deps.clock.now().getTime();
  for (const name of names) {
    const upload = /^upload-(\d+)-[0-9a-f]+\.part$/.exec(name);
    const dump = /^import-([0-9a-f]+)\.dump(\.part)?$/.exec(name);
    let gone = false;
    if (upload) gone = !processAlive(Number(upload[1]));
    else if (dump && !needed.has(dump[1])) {
      const st = await stat(path.join(dir, name)).catch(() => null);
      gone = st !== null && now - st.mtimeMs > YOUNG_MS;
    }
    if (gone) {
      await rm(path.join(dir, name), { force: true });
      removed.push(name);
    }
  }
  if (removed.length) deps.logger.warn({ removed }, 'removed import files nothing needs any more');
  return removed;
}
