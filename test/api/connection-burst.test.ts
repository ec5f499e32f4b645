/**
 * A burst of connections while the API's event loop is busy: the kernel completes their
 * handshakes into the listen queue, which must hold them all until the loop accepts them. With
 * Node's default backlog (511), bench:api's 2,000 SSE connections lost some to ETIMEDOUT and
 * ECONNRESET on a loaded machine.
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../src/app/build-app.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { testEnv } from '../harness/app.ts';
import { freshDatabase } from '../harness/database.ts';

const CONNECTIONS = 1000;
// The kernel caps every backlog at net.core.somaxconn (4096 by default since Linux 5.4; 128 before).
const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));

let runtime: Runtime;
let app: App;
let port: number;

beforeAll(async () => {
  const databaseUrl = await freshDatabase('api');
  const config = loadConfig(testEnv(databaseUrl, '11'.repeat(32)));
  runtime = await createRuntime(config, databaseUrl, createLogger('silent'));
  app = buildApp({ config, deps: runtime.deps, logger: createLogger('silent') });
  port = await app.start(0);
});
afterAll(async () => {
  await app?.stop();
  await runtime?.close();
});

// A thread of its own connects while this one (the server's) is blocked and accepts nothing.
const CLIENT = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const connected = new Int32Array(workerData.counter);
const sockets = [];
parentPort.once('message', () => {
  for (let i = 0; i < workerData.n; i++) {
    const s = net.connect(workerData.port, '127.0.0.1');
    s.on('connect', () => { Atomics.add(connected, 0, 1); Atomics.notify(connected, 0); });
    s.on('error', () => {});
    sockets.push(s);
  }
  parentPort.once('message', () => { for (const s of sockets) s.destroy(); parentPort.postMessage('closed'); });
});
`;

describe('a burst of connections', () => {
  it.skipIf(somaxconn < CONNECTIONS + 1)(`completes ${CONNECTIONS} handshakes while the server's event loop is busy`, async () => {
    const counter = new SharedArrayBuffer(4);
    const connected = new Int32Array(counter);
    const client = new Worker(CLIENT, { eval: true, workerData: { port, n: CONNECTIONS, counter } });
    await new Promise((r) => client.once('online', r));
    client.postMessage('go');
    // Blocks this thread, the server's, until every handshake is done or none has come for 5 s:
    // those beyond a full listen queue wait for a SYN retry the blocked server cannot answer.
    for (let seen = 0; seen < CONNECTIONS; ) {
      if (Atomics.wait(connected, 0, seen, 5000) === 'timed-out') break;
      seen = Atomics.load(connected, 0);
    }
    const count = Atomics.load(connected, 0);
    client.postMessage('close');
    await new Promise((r) => client.once('message', r));
    await client.terminate();
    expect(count).toBe(CONNECTIONS);
  });
});
