// Builds dist/: the command line and server as plain JavaScript bundles (esbuild), so that
// `npm start` and `backplane …` start without compiling TypeScript at run time — faster start,
// less memory. Dependencies stay in node_modules (not bundled). The codec thread is its own
// entry: the engine starts it as ./blob-worker.mjs next to the bundle that imports it.
// bin/backplane.js uses dist/ only while it is newer than every source file.
// The web console (src/console/) is bundled for browsers into dist/console/: hashed file names,
// so the server can let browsers keep them for good, and an index.html that names them.
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

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

const consoleOut = path.join(dist, 'console');
// The schema for the console's normalized cache (which type belongs to which union or interface),
// made from schema.graphql at each build so it cannot drift from the API.
const { buildSchema, introspectionFromSchema } = await import('graphql');
const introspection = introspectionFromSchema(buildSchema(await readFile(path.join(root, 'schema.graphql'), 'utf8')), { descriptions: false });
const schemaModule = {
  name: 'backplane-introspection',
  setup(b) {
    b.onResolve({ filter: /^backplane:introspection$/ }, () => ({ path: 'introspection', namespace: 'backplane' }));
    b.onLoad({ filter: /.*/, namespace: 'backplane' }, () => ({ contents: JSON.stringify(introspection), loader: 'json' }));
  },
};
const bundled = await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/console/main.tsx' },
  outdir: consoleOut,
  entryNames: 'assets/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  bundle: true,
  minify: true,
  platform: 'browser',
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  // urql and graphcache keep development warnings behind NODE_ENV; a shipped console has none.
  define: { 'process.env.NODE_ENV': '"production"' },
  tsconfig: 'src/console/tsconfig.json',
  plugins: [schemaModule],
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const assets = Object.keys(bundled.metafile.outputs).map((f) => '/' + path.relative(consoleOut, path.join(root, f)).split(path.sep).join('/'));
const template = await readFile(path.join(root, 'src/console/index.html'), 'utf8');
await writeFile(
  path.join(consoleOut, 'index.html'),
  template
    .replace('<!--styles-->', assets.filter((a) => a.endsWith('.css')).map((a) => `<link rel="stylesheet" href="${a}">`).join(''))
    .replace('<!--scripts-->', assets.filter((a) => a.endsWith('.js')).map((a) => `<script type="module" src="${a}"></script>`).join('')),
);

// A stamp bin/backplane.js compares with the sources' modification times.
await writeFile(path.join(dist, 'BUILT'), `${new Date().toISOString()}\n`);
