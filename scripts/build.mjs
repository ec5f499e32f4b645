// Builds dist/: the command line and server as plain JavaScript bundles (esbuild), so that
// `npm start` and `backplane …` start without compiling TypeScript at run time — faster start,
// less memory. Dependencies stay in node_modules (not bundled). The codec thread is its own
// entry: the engine starts it as ./blob-worker.mjs next to the bundle that imports it.
// bin/backplane.js uses dist/ only while it is newer than every source file.
// The web console (src/console/) is bundled for browsers into dist/console/ (build-console.mjs).
import { build } from 'esbuild';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { buildConsole } from './build-console.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  absWorkingDir: root,
  entryPoints: {
    backplane: 'src/cli/main.ts',
    repo: 'src/cli/repo-entry.ts',
    'blob-worker': 'src/engine/blob-worker.mjs',
  },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  // Separate chunks for dynamic imports, so `backplane repo` does not load the server's dependencies.
  splitting: true,
  // Flat: every chunk sits next to blob-worker.mjs, which the engine finds relative to itself.
  chunkNames: '[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
});

await buildConsole(root, path.join(dist, 'console'));

// A stamp bin/backplane.js compares with the sources' modification times.
await writeFile(path.join(dist, 'BUILT'), `${new Date().toISOString()}\n`);
