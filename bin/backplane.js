#!/usr/bin/env node
// The `backplane` command. Runs the build in dist/ (`npm run build`; npm install makes it) when
// it is newer than every source file, otherwise the TypeScript sources through tsx, so an
// edited checkout never runs stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stamp = join(root, 'dist', 'BUILT');

function newestIn(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestIn(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function buildIsCurrent() {
  if (!existsSync(stamp)) return false;
  const built = statSync(stamp).mtimeMs;
  return ['src', 'jobs'].every((d) => !existsSync(join(root, d)) || newestIn(join(root, d)) <= built);
}

if (buildIsCurrent()) {
  process.setSourceMapsEnabled(true);
  await import('../dist/backplane.mjs');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
