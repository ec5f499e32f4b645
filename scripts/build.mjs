// Builds dist/: the command line and server as plain JavaScript bundles (esbuild), so that
// `npm start` and `backplane …` start without compiling TypeScript at run time — faster start,
// less memory. Dependencies stay in node_modules (not bundled). The codec thread is its own
// entry: the engine starts it as ./blob-worker.mjs next to the bundle that imports it.
// bin/backplane.js uses dist/ only while no source file that went into what a command loads is
// newer than the build: dist/BUILT lists those files (from esbuild's metafile) per command family.
// The web console (src/console/) is bundled for browsers into dist/console/ (build-console.mjs).
import { build } from 'esbuild';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { buildConsole } from './build-console.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const dist = path.join(root, 'dist');

// Sources edited while the build runs count as newer than it.
const started = Date.now();
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
const { metafile } = await build({
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
  // Stack traces need only the mappings; Node keeps each loaded map whole, per thread, while source
  // maps are on (bin/backplane.js), and the sources are in the repository beside the build.
  sourcesContent: false,
  logLevel: 'warning',
  metafile: true,
});

await buildConsole(root, path.join(dist, 'console'));

/**
 * The source files bundled into an output and every chunk it imports (dynamic imports too, unless
 * `dynamic` is false: `backplane repo` runs the main chunk's own code, then only the repo chunks).
 */
function inputsOf(output, dynamic, files = new Set(), seen = new Set()) {
  if (seen.has(output)) return files;
  seen.add(output);
  const out = metafile.outputs[output];
  for (const input of Object.keys(out.inputs)) files.add(input);
  for (const imp of out.imports) {
    if (imp.external || (imp.kind === 'dynamic-import' && !dynamic)) continue;
    inputsOf(imp.path, dynamic, files, seen);
  }
  return files;
}

// The stamp bin/backplane.js reads: when the build started, and per command family the sources
// whose modification times it compares with that (the codec thread's in both).
const sorted = (...sets) => [...new Set(sets.flatMap((s) => [...s]))].sort();
const worker = inputsOf('dist/blob-worker.mjs', true);
// What backplane.mjs imports for `repo`: each of its dynamic imports that leads to src/cli/repo.ts
// (were another command's chunk to lead there too, repo would check more files, never fewer).
const repoChunks = metafile.outputs['dist/backplane.mjs'].imports
  .filter((imp) => imp.kind === 'dynamic-import' && !imp.external)
  .map((imp) => inputsOf(imp.path, true))
  .filter((files) => files.has('src/cli/repo.ts'));
if (repoChunks.length === 0) throw new Error('build: no chunk of dist/backplane.mjs holds src/cli/repo.ts');
await writeFile(
  path.join(dist, 'BUILT'),
  JSON.stringify({
    started,
    inputs: {
      repo: sorted(inputsOf('dist/backplane.mjs', false), ...repoChunks, inputsOf('dist/repo.mjs', true), worker),
      all: sorted(inputsOf('dist/backplane.mjs', true), inputsOf('dist/repo.mjs', true), worker),
    },
  }) + '\n',
);
