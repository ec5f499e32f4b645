/**
 * The web console's load times (a benchmark: it prints numbers and asserts nothing).
 *
 * `backplane start` from a fresh home, as `npm start` runs it; the demo environment gets 10,000
 * snapshot rows in the catalog (rows only: listing reads the catalog, not the repository). Then,
 * in Debian's chromium with a cold cache each run:
 * - sign-in: from navigation to the sign-in form on screen;
 * - overview: signed in (key already in sessionStorage), from navigation to the overview table;
 * - environment: the demo environment's page with its 10,000 snapshots, from navigation to the
 *   first page of rows, and the bytes of that GraphQL answer.
 * Medians with min and max over BENCH_RUNS (default 7); JSON in bench/results/console.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import puppeteer, { type Browser } from 'puppeteer-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const SNAPSHOTS = 10_000;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

function start(home: string): Promise<{ child: ChildProcess; port: number; key: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, BACKPLANE_HOME: path.join(home, '.backplane'), PORT: '0', LOG_LEVEL: 'warn' };
  for (const name of ['DATABASE_URL', 'BACKPLANE_SECRET_KEY', 'PUBLIC_URL']) delete env[name];
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/backplane.js'), 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr += line + '\n';
      const port = /Console: +http:\/\/[^:]+:(\d+)\//.exec(stderr)?.[1];
      const key = /Admin API key \(shown once, keep it\):\s+(bp_\S+)/.exec(stderr)?.[1];
      if (port && key && /Stop with Ctrl-C/.test(stderr)) resolve({ child, port: Number(port), key });
    });
    child.stdout!.resume();
    child.once('exit', (code) => reject(new Error(`backplane start exited with ${code}:\n${stderr}`)));
  });
}

/** 10,000 READY snapshot rows of the demo environment, a day apart in steps of a minute. */
async function addSnapshots(home: string): Promise<string> {
  const state = JSON.parse(await fs.readFile(path.join(home, '.backplane', 'embedded.json'), 'utf8')) as { port: number; user: string; password: string };
  const client = new pg.Client({ host: '127.0.0.1', port: state.port, user: state.user, password: state.password, database: 'backplane' });
  await client.connect();
  try {
    const env = await client.query<{ id: string; organization_id: string; project_id: string }>(`SELECT id, "organizationId" AS organization_id, "projectId" AS project_id FROM environments WHERE name = 'demo'`);
    const { id, organization_id, project_id } = env.rows[0];
    await client.query(
      `INSERT INTO snapshots (id, "organizationId", "projectId", "environmentId", kind, includes, label, status, "sizeBytes", "addedBytes", "durationMs", "createdAt", "completedAt")
       SELECT gen_random_uuid()::text, $1, $2, $3, 'SCHEDULED', ARRAY['DB','FILES']::"SnapshotInclude"[], 'bench ' || g, 'READY', 400000 + g, 1000 + g, 900 + g % 500,
              now() - make_interval(mins => g), now() - make_interval(mins => g)
       FROM generate_series(1, $4::int) g`,
      [organization_id, project_id, id, SNAPSHOTS],
    );
    return id;
  } finally {
    await client.end();
  }
}

function stats(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1], runs: s.length };
}

async function measure(browser: Browser, url: string, key: string | null, selector: string, graphqlOperation?: string) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  await page.setCacheEnabled(false);
  if (key) await page.evaluateOnNewDocument((k) => sessionStorage.setItem('backplane.apiKey', k), key);
  let answerBytes = 0;
  if (graphqlOperation) {
    page.on('response', async (res) => {
      if (res.url().includes(`operationName=${graphqlOperation}`)) answerBytes = Math.max(answerBytes, (await res.buffer()).length);
    });
  }
  const t0 = performance.now();
  await page.goto(url);
  await page.waitForSelector(selector, { timeout: 60_000 });
  const ms = performance.now() - t0;
  await context.close();
  return { ms, answerBytes };
}

const home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-bench-console-'));
await fs.chmod(home, 0o777);
const { child, port, key } = await start(home);
let browser: Browser | undefined;
try {
  const environmentId = await addSnapshots(home);
  const gid = Buffer.from(`Environment:${environmentId}`).toString('base64');
  const origin = `http://127.0.0.1:${port}`;
  browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  // One unmeasured visit: the server's first requests load its lazy modules.
  await measure(browser, `${origin}/#/env/${encodeURIComponent(gid)}`, key, '#snapshots tbody tr');
  const signIn: number[] = [];
  const overview: number[] = [];
  const environment: number[] = [];
  let pageBytes = 0;
  for (let i = 0; i < RUNS; i++) {
    signIn.push((await measure(browser, `${origin}/`, null, 'input[name=apiKey]')).ms);
    overview.push((await measure(browser, `${origin}/`, key, '.page td a[href^="#/env/"]')).ms);
    const env = await measure(browser, `${origin}/#/env/${encodeURIComponent(gid)}`, key, '#snapshots tbody tr:nth-child(20)', 'ConsoleEnvironment');
    environment.push(env.ms);
    pageBytes = env.answerBytes;
  }
  const result = {
    at: new Date().toISOString(),
    loadavg: os.loadavg(),
    snapshots: SNAPSHOTS + 0,
    signInMs: stats(signIn),
    overviewMs: stats(overview),
    environmentMs: stats(environment),
    environmentPageAnswerBytes: pageBytes,
  };
  const row = (name: string, s: ReturnType<typeof stats>) => `${name.padEnd(42)} ${s.median.toFixed(0).padStart(6)} ms  (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)}, ${s.runs} runs)`;
  console.log(row('sign-in form on screen', result.signInMs));
  console.log(row('overview (signed in)', result.overviewMs));
  console.log(row(`environment, ${SNAPSHOTS} snapshots, 1st page`, result.environmentMs));
  console.log(`environment page answer: ${pageBytes} bytes (one page of 20 rows)`);
  await fs.mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
  await fs.writeFile(path.join(ROOT, 'bench/results/console.json'), JSON.stringify(result, null, 2) + '\n');
} finally {
  await browser?.close();
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  await fs.rm(home, { recursive: true, force: true });
}
