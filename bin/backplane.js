#!/usr/bin/env node
// The `backplane` command. Runs the build in dist/ (`npm run build`; npm install makes it) when
// no source file bundled into what the command loads changed since that build started, otherwise
// the TypeScript sources through tsx, so an edited checkout never runs stale code. dist/BUILT
// (scripts/build.mjs) lists those files per command family from esbuild's metafile: `repo` checks
// the ~50 files of the engine's command line, not every file under src/ and jobs/.
import { readFileSync, statSync } from 'node:fs';
import module from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Node 22.1+ keeps the compiled code of loaded modules on disk between runs; older ones lack it.
if (typeof module.enableCompileCache === 'function') module.enableCompileCache();

const root = dirname(dirname(fileURLToPath(import.meta.url)));

function buildIsCurrent(family) {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(join(root, 'dist', 'BUILT'), 'utf8'));
  } catch {
    return false;
  }
  const files = stamp?.inputs?.[family];
  if (typeof stamp?.started !== 'number' || !Array.isArray(files)) return false;
  for (const f of files) {
    const st = statSync(join(root, f), { throwIfNoEntry: false });
    if (!st || st.mtimeMs >= stamp.started) return false;
  }
  return true;
}

const family = process.argv[2] === 'repo' ? 'repo' : 'all';
if (buildIsCurrent(family)) {
  // Stack traces then name TypeScript lines. Reading the maps costs every start a few ms, and
  // `repo` prints a stack only under BACKPLANE_DEBUG.
  if (family !== 'repo' || process.env.BACKPLANE_DEBUG) process.setSourceMapsEnabled(true);
  await import('../dist/backplane.mjs');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
