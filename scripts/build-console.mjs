// Bundles the web console (src/console/) for browsers: hashed file names under assets/, so the
// server can let browsers keep them for good, and an index.html that names them.
import { build } from 'esbuild';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Builds the console into `consoleOut`; resolves with the files written, relative to it. */
export async function buildConsole(root, consoleOut) {
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
  return [...assets, '/index.html'];
}
