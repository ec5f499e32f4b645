/**
 * The web console in a real browser (Debian's chromium driven by puppeteer-core) against
 * `backplane start` as a new user starts it: a fresh home, the embedded PostgreSQL, the demo
 * environment and the printed admin key. Everything happens through the pages as a person would
 * do it: sign in, take a snapshot and watch it reach 100% from subscription events, pin it, change
 * the demo database and restore the snapshot, schedule with the retention preview, see an alert
 * arrive, and a read key that is offered no write button. The main pages are photographed at
 * 1280 and 390 px, into docs/screenshots/ (the README shows them) when CONSOLE_SCREENSHOTS=1.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFresh, type FreshStart } from '../harness/fresh-start.ts';
import { requireTool } from '../harness/prerequisites.ts';
import { until } from '../harness/process.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The README's screenshots are rewritten only when asked (CONSOLE_SCREENSHOTS=1), so that a test
// run leaves the tree clean; otherwise they go to a temporary folder (still taken: a page that
// cannot be photographed is a failure either way).
const SHOTS = process.env.CONSOLE_SCREENSHOTS === '1' ? path.join(ROOT, 'docs/screenshots') : path.join(os.tmpdir(), `bp-console-shots-${process.pid}`);
// Generous: two cores shared with the rest of the suite.
const WAIT = { timeout: 120_000 };

let bp: FreshStart | undefined;
let browser: Browser | undefined;
let page: Page;
let origin: string;
let adminKey: string;
let env: NodeJS.ProcessEnv;
let demoEnvironmentId: string;
/** Variables of every ConsoleEnvironment request the page sent. */
const environmentRequests: Array<Record<string, unknown>> = [];
const requestBodies: Promise<void>[] = [];

/** A `backplane` command beside the server (sharing its home); throws on a non-zero exit. */
async function backplane(...args: string[]) {
  const r = await bp!.run(args);
  if (r.code !== 0) throw new Error(`backplane ${args.join(' ')} exited with ${r.code}:\n${r.stderr}`);
  return r;
}

async function gql<R>(key: string, query: string, variables: unknown = {}): Promise<R> {
  const res = await fetch(`${origin}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query, variables }) });
  const body = (await res.json()) as { data?: R; errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data!;
}

/** Resolves when a snapshot with this label is READY, from the API's own environmentActivity. */
function snapshotReady(label: string): Promise<void> {
  const client = createClient({ url: `${origin.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${adminKey}` }, retryAttempts: 0 });
  const query = 'subscription($e: ID!) { environmentActivity(environmentId: $e) { snapshot { label status } } }';
  return new Promise<void>((resolve, reject) => {
    const stop = client.subscribe<{ environmentActivity: { snapshot: { label: string | null; status: string } | null } }>(
      { query, variables: { e: demoEnvironmentId } },
      {
        next: ({ data }) => {
          const snap = data?.environmentActivity.snapshot;
          if (snap?.label === label && snap.status === 'READY') {
            stop();
            void client.dispose();
            resolve();
          }
        },
        error: reject,
        complete: () => undefined,
      },
    );
  });
}

async function demoOrders(): Promise<number> {
  const { stdout } = await backplane('psql', 'demo', '-At', '-c', 'select count(*) from orders');
  return Number(stdout.trim());
}

/** The page at both widths, for the README. */
async function screenshots(name: string) {
  for (const width of [1280, 390]) {
    await page.setViewport({ width, height: width > 500 ? 900 : 844 });
    await page.screenshot({ path: path.join(SHOTS, `${name}-${width}.png`), fullPage: width > 500 ? false : true });
  }
  await page.setViewport({ width: 1280, height: 900 });
}

async function signIn(key: string) {
  await page.goto(`${origin}/`);
  await page.waitForSelector('input[name=apiKey]', WAIT);
  await page.type('input[name=apiKey]', key);
  await page.click('form button[type=submit]');
  await page.waitForSelector('header.top nav', WAIT);
}

async function go(hash: string) {
  await page.evaluate((h) => (location.hash = h), hash);
}

/**
 * A TCP proxy to the server whose WebSocket connections can be frozen (the server's frames are
 * dropped, as on a dead network) and then cut, while plain HTTP keeps going.
 */
async function webSocketBreaker(port: number) {
  const sockets = new Set<{ client: net.Socket; upstream: net.Socket; ws: boolean; frozen: boolean }>();
  let opened: () => void = () => undefined;
  const webSocketOpened = new Promise<void>((r) => (opened = r));
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    const conn = { client, upstream, ws: false, frozen: false };
    sockets.add(conn);
    client.once('data', (first) => {
      conn.ws = /^upgrade: websocket/im.test(first.toString('latin1'));
      if (conn.ws) opened();
    });
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!conn.frozen) client.write(d);
    });
    const end = () => {
      sockets.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** Resolves once a WebSocket connection has gone through. */
    webSocketOpened,
    /** From now on, the server's frames on the WebSocket connections open now are lost. */
    freeze: () => [...sockets].filter((c) => c.ws).forEach((c) => (c.frozen = true)),
    cut: () => [...sockets].filter((c) => c.frozen).forEach((c) => c.client.destroy()),
    close: () => new Promise<void>((r) => {
      for (const c of sockets) c.client.destroy();
      server.close(() => r());
    }),
  };
}

/** The row of the snapshot labelled `label` on the environment page. */
const row = (label: string) => `tr[data-label-text="${label}"]`;

beforeAll(async () => {
  await requireTool(CHROMIUM, ['--version'], 'apt-get install chromium');
  // The server serves dist/console as built at install: a console changed since must be rebuilt
  // (npm run build), or this test would judge the old one.
  const built = (await fs.stat(path.join(ROOT, 'dist/console/index.html')).catch(() => null))?.mtimeMs ?? 0;
  const sources = await fs.readdir(path.join(ROOT, 'src/console'), { recursive: true });
  const newer: string[] = [];
  // generated/ is rewritten by `npm run codegen`, same content or not; a change that matters
  // there comes from operations/*.graphql, which is checked (and client-generated.test.ts checks
  // generated/ against the schema).
  for (const f of sources) {
    if (f.startsWith('generated')) continue;
    if ((await fs.stat(path.join(ROOT, 'src/console', f))).mtimeMs > built) newer.push(f);
  }
  expect(newer, 'src/console changed after the last build: run `npm run build`').toEqual([]);

  bp = await startFresh('bp-console-');
  ({ origin, env, adminKey } = bp);
  expect(bp.banner).toContain(`Console:   ${origin}/`);
  expect(adminKey, bp.banner).toMatch(/^bp_\S+$/);
  await fs.mkdir(SHOTS, { recursive: true });

  browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.pathname !== '/graphql') return;
    // urql sends queries as GET while they fit in a URL, else POST.
    if (req.method() === 'GET') {
      if (url.searchParams.get('operationName') === 'ConsoleEnvironment') environmentRequests.push(JSON.parse(url.searchParams.get('variables') ?? '{}'));
      return;
    }
    // Chromium leaves larger bodies out of the event: ask for them.
    const posted = req.postData() !== undefined ? Promise.resolve(req.postData()) : req.fetchPostData();
    requestBodies.push(
      posted.then((text) => {
        const body = JSON.parse(text ?? '{}') as { operationName?: string; variables?: Record<string, unknown> };
        if (body.operationName === 'ConsoleEnvironment') environmentRequests.push(body.variables ?? {});
      }),
    );
  });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await bp?.dispose();
  if (process.env.CONSOLE_SCREENSHOTS !== '1') await fs.rm(SHOTS, { recursive: true, force: true });
});

describe('web console', { timeout: 300_000 }, () => {
  // A failure in a browser says little by itself: show what the page showed, and the server's end.
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail' || !page) return;
    console.log(`page at ${page.url()}:\n${await page.evaluate(() => document.body.innerText).catch((e: Error) => e.message)}`);
    console.log(`server stderr (last lines):\n${(bp?.output ?? []).slice(-40).join('\n')}`);
  });

  it('is served at / with its CSP, and its hashed assets are cached for good', async () => {
    const index = await fetch(`${origin}/`);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const csp = index.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain(`connect-src 'self' ws://127.0.0.1:${origin.split(':')[2]}`);
    const script = /src="(\/assets\/app-[A-Za-z0-9]+\.js)"/.exec(await index.text())![1];
    const asset = await fetch(origin + script);
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect((await fetch(`${origin}/assets/..%2Fpackage.json`)).status).toBe(404);
  });

  it('signs in with the printed admin key, kept in sessionStorage and never in the URL', async () => {
    await signIn(adminKey);
    expect(page.url()).not.toContain(adminKey);
    expect(await page.evaluate(() => sessionStorage.getItem('backplane.apiKey'))).toBe(adminKey);
    await page.waitForSelector('.page td a[href^="#/env/"]', WAIT);
    demoEnvironmentId = decodeURIComponent((await page.$eval('.page td a[href^="#/env/"]', (a) => a.getAttribute('href')!)).slice('#/env/'.length));
  });

  it('takes a snapshot of the demo and shows its progress reaching 100% from subscription events', async () => {
    await go(`/env/${encodeURIComponent(demoEnvironmentId)}`);
    await page.waitForSelector('#take-snapshot input[name=label]', WAIT);
    await page.type('#take-snapshot input[name=label]', 'before-change');
    await page.click('#take-snapshot button[type=submit]');
    // Only the `operation` subscription feeds this bar: no reload, no query of the operation.
    await page.waitForSelector('#started-operation .progress[data-status="SUCCEEDED"] [role=progressbar][aria-valuenow="100"]', WAIT);
    await page.waitForSelector(`${row('before-change')} .status.ready`, WAIT);
    // The list asks the API for one page, never for everything.
    await Promise.all(requestBodies);
    expect(environmentRequests.length).toBeGreaterThan(0);
    for (const v of environmentRequests) expect(v.first ?? v.last).toBe(20);
    await screenshots('environment');
  });

  it('pins the snapshot with a label', async () => {
    await page.click(`${row('before-change')} button[data-action=pin]`);
    await page.waitForSelector('input[name=pinLabel]', WAIT);
    await page.type('input[name=pinLabel]', 'keep for the test');
    await page.click('button[data-action=confirm-pin]');
    await page.waitForSelector(`${row('before-change')} .pin`, WAIT);
    expect(await page.$eval(`${row('before-change')} .pin`, (e) => e.textContent)).toContain('keep for the test');
    // Deleting a pinned snapshot is not offered as a bare button… the API's refusal is what counts:
    await page.click(`${row('before-change')} button[data-action=delete]`);
    await page.click(`${row('before-change')} button[data-action=confirm-delete]`);
    await page.waitForSelector('tr.detail [role=alert] code', WAIT);
    expect(await page.$eval('tr.detail [role=alert]', (e) => e.textContent)).toMatch(/^SNAPSHOT_PINNED /);
  });

  it('restores the snapshot after the demo database changed, and shows the restore log', async () => {
    const before = await demoOrders();
    expect(before).toBeGreaterThan(0);
    await backplane('psql', 'demo', '-c', 'delete from orders');
    expect(await demoOrders()).toBe(0);

    await page.click(`${row('before-change')} button[data-action=restore]`);
    await page.waitForSelector('#restore-dialog input[name=confirm]', WAIT);
    expect(await page.$eval('#restore-dialog input[name=safety]', (e) => (e as HTMLInputElement).checked)).toBe(true);
    expect(await page.$eval('button[data-action=confirm-restore]', (e) => (e as HTMLButtonElement).disabled)).toBe(true);
    await page.type('#restore-dialog input[name=confirm]', 'demo');
    await screenshots('restore-dialog');
    await page.click('button[data-action=confirm-restore]');
    await page.waitForSelector('#restore-dialog .progress[data-status="SUCCEEDED"]', WAIT);
    await page.waitForSelector('#restore-logs li[data-status="SUCCEEDED"]', WAIT);
    expect(await page.$eval('#restore-logs li[data-status="SUCCEEDED"]', (e) => e.textContent)).toMatch(/into demo \(SWAP/);
    expect(await demoOrders()).toBe(before);
  });

  it('lists the operations seen, finished ones with their result, and one started elsewhere as it starts', async () => {
    await go('/operations');
    await page.waitForSelector('[data-operation-card] .progress[data-status="SUCCEEDED"]', WAIT);
    const before = (await page.$$('[data-operation-card]')).length;
    expect(before).toBeGreaterThanOrEqual(2);
    // Another client starts a snapshot: the environment's activity brings it here, live.
    const started = await gql<{ createSnapshot: { operation: { id: string } } }>(
      adminKey,
      'mutation($i: CreateSnapshotInput!) { createSnapshot(input: $i) { ... on SnapshotOperationPayload { operation { id } } } }',
      { i: { environmentId: demoEnvironmentId, label: 'from-another-client' } },
    );
    const card = `[data-operation-card="${started.createSnapshot.operation.id}"]`;
    await page.waitForSelector(`${card} .progress[data-status="SUCCEEDED"] [role=progressbar][aria-valuenow="100"]`, WAIT);
    expect((await page.$$('[data-operation-card]')).length).toBe(before + 1);
    await screenshots('operations');
    // The environment's page lists its recent operations too.
    await go(`/env/${encodeURIComponent(demoEnvironmentId)}`);
    await page.waitForSelector(`#environment-operations ${card}`, WAIT);
  });

  it('lists, in a tab opened after it started, an operation started through the API, with its progress', async () => {
    // A transaction holding the demo's orders table keeps the snapshot's pg_dump waiting: the
    // operation is under way, for as long as the test needs, whatever the machine's speed.
    const holder = spawn(process.execPath, [path.join(ROOT, 'bin/backplane.js'), 'psql', 'demo', '-At', '-v', 'ON_ERROR_STOP=1'], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'inherit'] });
    const second = await browser!.newPage();
    try {
      const locked = new Promise<void>((resolve, reject) => {
        readline.createInterface({ input: holder.stdout! }).on('line', (l) => l === 'held' && resolve());
        holder.once('exit', (code) => reject(new Error(`psql exited with ${code} before holding the lock`)));
      });
      holder.stdin!.write("begin; lock table orders in access exclusive mode; select 'held';\n");
      await locked;
      const started = await gql<{ createSnapshot: { operation: { id: string } } }>(
        adminKey,
        'mutation($i: CreateSnapshotInput!) { createSnapshot(input: $i) { ... on SnapshotOperationPayload { operation { id } } } }',
        { i: { environmentId: demoEnvironmentId, label: 'started-before-the-page' } },
      );
      const id = started.createSnapshot.operation.id;
      // A new tab: its own sessionStorage, so nothing it tracked can list the operation; only the API's list does.
      await second.setViewport({ width: 1280, height: 900 });
      await second.goto(`${origin}/`);
      await second.type('input[name=apiKey]', adminKey);
      await second.click('form button[type=submit]');
      await second.waitForSelector('header.top nav', WAIT);
      await second.evaluate(() => (location.hash = '/operations'));
      const card = `[data-operation-card="${id}"]`;
      await second.waitForSelector(`${card} .progress:is([data-status="QUEUED"], [data-status="RUNNING"]) .phase`, WAIT);
      expect(await second.$eval(`${card} h2`, (e) => e.textContent)).toMatch(/snapshot · demo/);
      holder.stdin!.end('rollback;\n');
      // Then it runs on, fed by its subscription, to the end.
      await second.waitForSelector(`${card} .progress[data-status="SUCCEEDED"] [role=progressbar][aria-valuenow="100"]`, WAIT);
    } finally {
      if (holder.exitCode === null) holder.kill('SIGTERM');
      await second.close();
    }
  });

  it('creates a schedule, showing the next runs and the retention preview before saving', async () => {
    await go(`/schedule/${encodeURIComponent(demoEnvironmentId)}`);
    await page.waitForSelector('input[name=fullCron]', WAIT);
    await page.type('input[name=fullCron]', '0 3 * * *');
    await page.waitForFunction(() => document.querySelectorAll('[data-next-runs=fullCron] li').length === 5, WAIT);
    await page.type('input[name="full-daily"]', '1');
    expect(await page.$eval('button[data-action=save-schedule]', (e) => (e as HTMLButtonElement).disabled)).toBe(true);
    await page.click('button[data-action=preview]');
    await page.waitForSelector('#retention-preview li', WAIT);
    expect(await page.$eval('#retention-preview h2', (e) => e.textContent)).toMatch(/Retention preview: \d+ to delete, \d+ kept/);
    await page.waitForFunction(() => !(document.querySelector('button[data-action=save-schedule]') as HTMLButtonElement).disabled, WAIT);
    await page.click('button[data-action=save-schedule]');
    await page.waitForSelector('#schedule-saved', WAIT);
    const saved = await gql<{ schedule: { fullCron: string; fullRetention: { daily: number } } }>(adminKey, 'query($e: ID!) { schedule(environmentId: $e) { fullCron fullRetention { daily } } }', { e: demoEnvironmentId });
    expect(saved.schedule).toEqual({ fullCron: '0 3 * * *', fullRetention: { daily: 1 } });
    await screenshots('schedule');
  });

  it('shows a new alert and the unread count without a reload', async () => {
    await go('/alerts');
    await page.waitForSelector('.page h1', WAIT);
    const before = await page.$$eval('li[data-alert]', (l) => l.length);
    // A destination that cannot work (its folder would be inside a file) turns unhealthy when tested: one alert.
    const file = path.join(bp!.home, 'not-a-folder');
    await fs.writeFile(file, '');
    const created = await gql<{ createDestination: { destination: { id: string } } }>(adminKey, 'mutation($i: CreateDestinationInput!) { createDestination(input: $i) { ... on DestinationPayload { destination { id } } } }', { i: { name: 'broken', provider: 'LOCAL', path: path.join(file, 'repo') } });
    await gql(adminKey, 'mutation($i: DestinationIdInput!) { testDestination(input: $i) { __typename } }', { i: { id: created.createDestination.destination.id } });
    await page.waitForFunction((n) => document.querySelectorAll('li[data-alert]').length === n + 1, WAIT, before);
    await page.waitForSelector('li[data-type=DESTINATION_UNREACHABLE]', WAIT);
    await page.waitForSelector('#unread-alerts', WAIT);
    await screenshots('alerts');
    await go('/destinations');
    await page.waitForSelector('[data-destination]', WAIT);
    // The demo's own destination passes its test: the probe's steps are listed.
    await page.click('[data-destination] button.write');
    await page.waitForSelector('[data-destination] .probe li', WAIT);
    expect(await page.$eval('[data-destination] .probe', (e) => e.textContent)).toMatch(/✔ write/);
    await screenshots('destinations');
    // The demo archives WAL out of the box; its window opens once its first base backup is in the
    // catalog (no event says so: read the API until it does), and the overview shows it as it is.
    await until(
      () => gql<{ environment: { pointInTimeRecovery: { status: string; earliestRecoveryTime: string | null } } }>(adminKey, 'query($e: ID!) { environment(id: $e) { pointInTimeRecovery { status earliestRecoveryTime } } }', { e: demoEnvironmentId }),
      (r) => r.environment.pointInTimeRecovery.earliestRecoveryTime !== null,
      "the demo's recovery window",
      120_000,
    );
    await go('/');
    await page.waitForSelector('.page td a[href^="#/env/"]', WAIT);
    // Its status may move (ARCHIVING, LAGGING) between the two reads: the window is what must show.
    await page.waitForSelector('td.pitr [data-pitr-status] .pitr-window', WAIT);
    expect(await page.$eval('td.pitr .pitr-window', (e) => e.textContent)).toContain('→');
    await screenshots('overview');
  });

  it("resumes a progress bar from the operation's current state after its WebSocket was lost", async () => {
    const breaker = await webSocketBreaker(Number(new URL(origin).port));
    const second = await browser!.newPage();
    try {
      const proxied = `http://127.0.0.1:${breaker.port}`;
      await second.goto(`${proxied}/`);
      await second.type('input[name=apiKey]', adminKey);
      await second.click('form button[type=submit]');
      await second.waitForSelector('header.top nav', WAIT);
      await second.evaluate((h) => (location.hash = h), `/env/${encodeURIComponent(demoEnvironmentId)}`);
      await second.waitForSelector('#take-snapshot input[name=label]', WAIT);
      // The environment's activity subscription has opened the socket; from now on nothing it sends arrives.
      await breaker.webSocketOpened;
      breaker.freeze();
      const ready = snapshotReady('while-offline');
      await second.type('#take-snapshot input[name=label]', 'while-offline');
      await second.click('#take-snapshot button[type=submit]');
      await second.waitForSelector('#started-operation', WAIT);
      // The snapshot ends on the server while the page hears nothing.
      await ready;
      expect(await second.$('#started-operation .progress[data-status="SUCCEEDED"]')).toBeNull();
      breaker.cut();
      // graphql-ws connects again and subscribes again; the subscription answers with the state now.
      await second.waitForSelector('#started-operation .progress[data-status="SUCCEEDED"] [role=progressbar][aria-valuenow="100"]', WAIT);
    } finally {
      await second.close();
      await breaker.close();
    }
  });

  it('offers a read key no write button, and sends a revoked key back to sign-in with the reason', async () => {
    const { stdout } = await backplane('api-key', 'create', '--name', 'reader', '--scope', 'backups:read');
    const readKey = stdout.trim();
    await page.click('header .who button');
    await signIn(readKey);
    await go(`/env/${encodeURIComponent(demoEnvironmentId)}`);
    await page.waitForSelector(`${row('before-change')}`, WAIT);
    expect(await page.$$('button.write')).toHaveLength(0);
    expect(await page.$('#take-snapshot')).toBeNull();
    expect(await page.$eval('header .who', (e) => e.textContent)).toContain('read only');
    expect(await page.$('nav a[href="#/destinations"]')).toBeNull();
    // Downloads are reading: offered.
    expect(await page.$$(`${row('before-change')} button[data-variant]`)).toHaveLength(3);
    await go(`/schedule/${encodeURIComponent(demoEnvironmentId)}`);
    await page.waitForSelector('button[data-action=preview]', WAIT);
    expect(await page.$$('button.write')).toHaveLength(0);

    const keys = await gql<{ apiKeys: { edges: { node: { id: string; name: string } }[] } }>(adminKey, '{ apiKeys(first: 50) { edges { node { id name } } } }');
    const reader = keys.apiKeys.edges.find((e) => e.node.name === 'reader')!.node;
    await gql(adminKey, 'mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { __typename } }', { i: { id: reader.id } });
    // The next request of the open page is refused: no reload needed to be sent back.
    await go('/');
    await page.waitForSelector('#signin-notice', WAIT);
    expect(await page.$eval('#signin-notice', (e) => e.textContent)).toMatch(/revoked/i);
    expect(await page.evaluate(() => sessionStorage.getItem('backplane.apiKey'))).toBeNull();
    await screenshots('sign-in');
  });
});
