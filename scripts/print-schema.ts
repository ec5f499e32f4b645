// Writes schema.graphql from the Pothos schema; `--check` exits non-zero when the committed file drifts.
import { readFileSync, writeFileSync } from 'node:fs';
import { printedSchema } from '../src/schema/print.ts';

const file = new URL('../schema.graphql', import.meta.url);
if (process.argv.includes('--check')) {
  if (readFileSync(file, 'utf8') !== printedSchema()) {
    console.error('schema.graphql is out of date: run npm run schema:print');
    process.exit(1);
  }
} else {
  writeFileSync(file, printedSchema());
}
