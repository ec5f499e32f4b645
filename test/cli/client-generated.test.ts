/**
 * The client command line's and the web console's typed documents are committed (a production
 * install has no codegen): they must be exactly what codegen makes from today's schema.graphql and
 * their .graphql files, or the client would send operations the server no longer has.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from '@graphql-codegen/cli';
import { expect, it } from 'vitest';
import config, { targets } from '../../codegen.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

it.each(['src/cli/client/generated/', 'src/console/generated/'])('%s is what `npm run codegen` makes (run it after changing the schema or the documents)', async (TARGET) => {
  const files = await generate({ ...config, cwd: ROOT, silent: true, generates: { [TARGET]: targets[TARGET]! } }, false);
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) {
    const committed = await fs.readFile(path.resolve(ROOT, f.filename), 'utf8');
    expect([f.filename, committed]).toEqual([f.filename, f.content]);
  }
}, 120_000);
