/**
 * README.md's GraphQL blocks, run in order as written against a server set up the way
 * `npm start` sets it up (the demo organization, project, environment with its own database and
 * files, a LOCAL destination, an admin key, a worker), so the README cannot drift from the API.
 *
 * Placeholders are filled the way a reader fills them: `<environment id>`, `<project id from
 * above>`… with the first id of that type in the latest answer that has one; the reader's own
 * values (an R2 account, access keys) with the samples in `OWN_VALUES`. An answer must have no
 * errors and no typed error result; work a mutation starts is awaited until it SUCCEEDED before the
 * next block; a download link must serve a zstd file. Subscriptions go over graphql-ws with the key
 * in the subscribe message, as GraphiQL sends them. A block preceded by
 * `<!-- readme-test: skip <reason> -->` is not run (the test lists them, so there stay few).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDemo } from '../../src/app/bootstrap.ts';
import { UpdateEnvironmentDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';
import { until } from '../harness/process.ts';
import { follow } from '../harness/snapshot-helpers.ts';

const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');

/** What only the reader knows; everything else comes from earlier answers. */
const OWN_VALUES: Record<string, string> = {
  '<account id>': '0123456789abcdef0123456789abcdef',
  '<key id>': 'AKIAIOSFODNN7EXAMPLE',
  '<secret>': 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};

interface Block {
  heading: string;
  query: string;
  skip?: string;
}

/** The ```graphql blocks of a markdown text, with the heading above each and its skip marker. */
function graphqlBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let heading = '';
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('#')) heading = lines[i].replace(/^#+\s*/, '');
    if (lines[i].trim() !== '```graphql') continue;
    const end = lines.indexOf('```', i + 1);
    const before = lines.slice(0, i).reverse().find((l) => l.trim() !== '') ?? '';
    const skip = /<!--\s*readme-test:\s*skip\s+(.*?)\s*-->/.exec(before)?.[1];
    blocks.push({ heading, query: lines.slice(i + 1, end).join('\n'), skip });
    i = end;
  }
  return blocks;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function* objects(v: Json): Generator<{ [k: string]: Json }> {
  if (Array.isArray(v)) for (const x of v) yield* objects(x);
  else if (v && typeof v === 'object') {
    yield v;
    for (const x of Object.values(v)) yield* objects(x);
  }
}

const TERMINAL = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

let app: TestApp;
let key: string;
let home: string;
let demoServer: ScratchPostgres;

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-readme-'));
  app = await startTestApp({ env: { BACKPLANE_HOME: home } });
  // The demo on a server of its own, as the embedded default's: its PITR archive (on out of the
  // box) streams and base-backs-up that server, not the cluster other test runs share.
  demoServer = await startScratchPostgres();
  const demo = await ensureDemo(app.runtime.deps, { home, databaseUrlFor: (db) => demoServer.url(db), demoDatabase: 'demo' });
  key = demo.adminKey!;
  // The dump "Import a dump" imports from the demo's own destination.
  const destination = await app.runtime.db.destination.findFirstOrThrow({ where: { provider: 'LOCAL', environments: { some: {} } } });
  const dumps = path.join(String((destination.config as { path: string }).path), 'dumps');
  await fs.mkdir(dumps, { recursive: true });
  await fs.writeFile(path.join(dumps, 'shop.sql.gz'), gzipSync("CREATE TABLE shop_orders (id bigserial PRIMARY KEY, customer text NOT NULL, total numeric(10,2));\nINSERT INTO shop_orders (customer, total) SELECT 'customer ' || g, g % 1000 FROM generate_series(1, 1000) g;\n"));
  await app.startWorker({ pitr: { home } });
}, 120_000);
afterAll(async () => {
  await app?.stop();
  await demoServer?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

describe('README.md', () => {
  // A snapshot, restores (one to a point in time, once the demo's archive has a window) and a
  // download run on a machine shared with other test runs.
  it('runs every GraphQL block as written, in order, on a fresh start', { timeout: 600_000 }, async () => {
    const blocks = graphqlBlocks(await fs.readFile(README, 'utf8'));
    expect(blocks.length).toBeGreaterThan(10);
    // Intentionally not runnable blocks stay the exception (none today).
    const skipped = blocks.filter((b) => b.skip);
    expect(skipped.length, `skipped: ${skipped.map((b) => b.skip).join('; ')}`).toBeLessThanOrEqual(2);

    /** Per GraphQL type, the first id of that type in the latest answer that has one. */
    const latest = new Map<string, string>();
    const fill = (query: string) =>
      query.replace(/<[^<>\n]+>/g, (placeholder) => {
        if (OWN_VALUES[placeholder]) return OWN_VALUES[placeholder];
        const m = /^<(\w+) id\b[^>]*>$/.exec(placeholder);
        const type = m && m[1][0].toUpperCase() + m[1].slice(1);
        const id = type && latest.get(type);
        if (!id) throw new Error(`no earlier answer gives ${placeholder}`);
        return id;
      });

    for (const [n, block] of blocks.entries()) {
      if (block.skip) continue;
      const where = `block ${n + 1} (under "${block.heading}"):\n${block.query}`;
      if (block.query.includes(WINDOW_TIME)) OWN_VALUES[WINDOW_TIME] = await timeInRecoveryWindow(fill(block.query.replaceAll(WINDOW_TIME, '')));
      const query = fill(block.query);
      const answers = query.trimStart().startsWith('subscription') ? await subscribe(query) : [await post(query)];
      for (const answer of answers) {
        expect(answer.errors, where).toBeUndefined();
        const failures = [...objects(answer.data as Json)].filter((o) => typeof o.code === 'string' && typeof o.message === 'string');
        expect(failures, where).toEqual([]);
      }

      const seen = new Map<string, string>();
      for (const o of answers.flatMap((a) => [...objects(a.data as Json)])) {
        if (typeof o.id === 'string') {
          const type = decodeGlobalID(o.id).typename;
          if (!seen.has(type)) seen.set(type, o.id);
        }
        // Work started: wait for it as the README's next steps do.
        if (typeof o.id === 'string' && decodeGlobalID(o.id).typename === 'Operation' && typeof o.status === 'string' && !TERMINAL.includes(o.status)) {
          const states = await follow(app, key, o.id);
          expect(states.at(-1), where).toMatchObject({ status: 'SUCCEEDED' });
        }
        if (typeof o.url === 'string' && o.url.includes('/downloads/')) {
          const res = await fetch(o.url);
          expect(res.status, where).toBe(200);
          expect(Buffer.from(await res.arrayBuffer()).subarray(0, 4).toString('hex'), where).toBe('28b52ffd');
        }
      }
      for (const [type, id] of seen) latest.set(type, id);
    }
  });
});

type Answer = { data?: unknown; errors?: unknown };

const WINDOW_TIME = '<a time in the recovery window>';

/**
 * What a reader reads off `pointInTimeRecovery` before restoring to a time: waits (polling, as a
 * reader would) until the window of the environment the block names has opened, past its first
 * base backup, and answers its newest recoverable time.
 */
async function timeInRecoveryWindow(query: string): Promise<string> {
  const environmentId = /environmentId: "([^"<]+)"/.exec(query)![1];
  const read = async () =>
    ((await post(`{ environment(id: "${environmentId}") { pointInTimeRecovery { status earliestRecoveryTime latestRecoveryTime } } }`)) as {
      data: { environment: { pointInTimeRecovery: { status: string; earliestRecoveryTime: string | null; latestRecoveryTime: string | null } } };
    }).data.environment.pointInTimeRecovery;
  const w = await until(read, (x) => !!x.earliestRecoveryTime && !!x.latestRecoveryTime && x.latestRecoveryTime > x.earliestRecoveryTime, "the demo's recovery window to open", 240_000);
  return w.latestRecoveryTime!;
}

async function post(query: string): Promise<Answer> {
  const res = await app.post({ query }, { key });
  return (await res.json()) as Answer;
}

/**
 * Runs a subscription as GraphiQL does and returns its events: until it completes (an operation
 * ends), or else its first event, caused by touching the environment it watches once it listens.
 */
async function subscribe(query: string): Promise<Answer[]> {
  const client = app.ws();
  // Nothing else in this test watches an environment, so a new listener on the topic is this one.
  const listening = () => app.runtime.deps.events.subscriberCount('environmentActivity');
  const before = listening();
  const events = client.iterate({ query, extensions: { headers: { Authorization: `Bearer ${key}` } } });
  const first = events.next();
  const environmentId = /environmentActivity\(environmentId: "([^"]+)"/.exec(query)?.[1];
  if (environmentId) {
    await until(async () => listening(), (c) => c > before, 'the subscription to listen', 60_000);
    const current = (await post(`{ environment(id: "${environmentId}") { name } }`)) as { data: { environment: { name: string } } };
    await app.gql(UpdateEnvironmentDocument, { input: { id: environmentId, name: current.data.environment.name } }, { key });
    const { value } = await first;
    await events.return?.();
    return [value as Answer];
  }
  const answers: Answer[] = [];
  for (let r = await first; !r.done; r = await events.next()) answers.push(r.value as Answer);
  expect(answers.length).toBeGreaterThan(0);
  return answers;
}

