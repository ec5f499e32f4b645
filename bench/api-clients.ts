/**
 * The subscribers of `npm run bench:api` (bench/api.ts), in a process of their own so the API
 * server's CPU and memory are its own. Forked with an IPC channel:
 *
 * parent → { type: 'start', url, key, transport, clients: [{ environmentId, operationId }] }
 * child  → { type: 'subscribed' } once every subscription request is sent
 * parent → { type: 'finish', waitMs } once every operation ended
 * child  → { type: 'result', clients: ClientResult[], loopDelayMs } once every client saw the end (or after waitMs)
 *
 * Each client is one graphql-ws connection (or, for SSE, two event streams, one per
 * subscription) with `environmentActivity(environmentId)` and `operation(id)`. Lag is the arrival
 * time minus the server-side time of the event: the activity event's `at` (stamped when it was
 * published) and the operation's `updatedAt` (the change the event announced). Each arrival is
 * stamped when its callback runs, so this process's own event-loop delay is part of every lag:
 * `loopDelayMs` (perf_hooks' histogram, from 'start' to the result) says how much.
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

export interface ClientSpec {
  environmentId: string;
  operationId: string;
}

export interface ClientResult {
  environmentId: string;
  /** Lag of each activity event, ms. */
  activityLagMs: number[];
  /** Lag of each operation update after the first (which is the state at subscription), ms. */
  operationLagMs: number[];
  /** The last status the operation subscription showed. */
  operationStatus: string | null;
  /** The operation subscription completed (the server ends it with the terminal state). */
  operationCompleted: boolean;
  /** An activity event showed the operation in a terminal state. */
  activitySawTerminal: boolean;
  errors: string[];
}

export type ParentMessage =
  | { type: 'start'; url: string; key: string; transport: 'ws' | 'sse'; clients: ClientSpec[] }
  | { type: 'finish'; waitMs: number };

const ACTIVITY = `subscription($id: ID!) { environmentActivity(environmentId: $id) { kind at operation { id status updatedAt } } }`;
const OPERATION = `subscription($id: ID!) { operation(id: $id) { id status phase bytesDone updatedAt } }`;
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

type Data = { environmentActivity?: { kind: string; at: string; operation: { status: string } | null }; operation?: { status: string; updatedAt: string } };

function track(spec: ClientSpec): { result: ClientResult; onActivity(d: Data): void; onOperation(d: Data): void } {
  const result: ClientResult = { environmentId: spec.environmentId, activityLagMs: [], operationLagMs: [], operationStatus: null, operationCompleted: false, activitySawTerminal: false, errors: [] };
  let first = true;
  return {
    result,
    onActivity(d) {
      const e = d.environmentActivity;
      if (!e) return;
      result.activityLagMs.push(Date.now() - Date.parse(e.at));
      if (e.operation && TERMINAL.has(e.operation.status)) result.activitySawTerminal = true;
    },
    onOperation(d) {
      const o = d.operation;
      if (!o) return;
      if (!first) result.operationLagMs.push(Date.now() - Date.parse(o.updatedAt));
      first = false;
      result.operationStatus = o.status;
    },
  };
}

function wsClients(url: string, key: string, specs: ClientSpec[]) {
  const clients: Client[] = [];
  const results = specs.map((spec) => {
    const t = track(spec);
    const client = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${key}` }, retryAttempts: 0, lazy: false });
    clients.push(client);
    const fail = (err: unknown) => t.result.errors.push(err instanceof Error ? err.message : JSON.stringify(err));
    client.subscribe<Data>({ query: ACTIVITY, variables: { id: spec.environmentId } }, { next: (m) => m.data && t.onActivity(m.data as Data), error: fail, complete: () => undefined });
    client.subscribe<Data>({ query: OPERATION, variables: { id: spec.operationId } }, { next: (m) => m.data && t.onOperation(m.data as Data), error: fail, complete: () => (t.result.operationCompleted = true) });
    return t.result;
  });
  return { results, close: async () => void (await Promise.all(clients.map((c) => c.dispose()))) };
}

/** One SSE stream (graphql-yoga's distinct-connections mode): a POST answered with `event: next` / `event: complete`. */
function sseStream(url: string, key: string, query: string, variables: Record<string, unknown>, agent: http.Agent, on: { next(d: Data): void; complete(): void; error(e: unknown): void }): () => void {
  const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` } }, (res) => {
    if (res.statusCode !== 200) on.error(new Error(`SSE answered ${res.statusCode}`));
    res.setEncoding('utf8');
    let buf = '';
    res.on('data', (chunk: string) => {
      buf += chunk;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: *(.*)$/m.exec(block)?.[1];
        const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
        if (event === 'complete') on.complete();
        else if (data) {
          const msg = JSON.parse(data) as { data?: Data; errors?: unknown };
          if (msg.errors) on.error(msg.errors);
          else if (msg.data) on.next(msg.data);
        }
      }
    });
    res.on('error', on.error);
  });
  req.on('error', (e) => on.error(e));
  req.end(JSON.stringify({ query, variables }));
  return () => req.destroy();
}

function sseClients(url: string, key: string, specs: ClientSpec[]) {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const closers: (() => void)[] = [];
  const results = specs.map((spec) => {
    const t = track(spec);
    const fail = (err: unknown) => t.result.errors.push(err instanceof Error ? err.message : JSON.stringify(err));
    closers.push(sseStream(url, key, ACTIVITY, { id: spec.environmentId }, agent, { next: t.onActivity, complete: () => undefined, error: fail }));
    closers.push(sseStream(url, key, OPERATION, { id: spec.operationId }, agent, { next: t.onOperation, complete: () => (t.result.operationCompleted = true), error: fail }));
    return t.result;
  });
  return { results, close: async () => closers.forEach((c) => c()) };
}

/** Event-loop delay of this process while its clients ran, ms. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

const loop = monitorEventLoopDelay({ resolution: 10 });
const ms = (ns: number) => Math.round(ns / 1e5) / 10;

let running: { results: ClientResult[]; close(): Promise<void> } | undefined;
process.on('message', (msg: ParentMessage) => {
  if (msg.type === 'start') {
    loop.enable();
    running = msg.transport === 'ws' ? wsClients(msg.url, msg.key, msg.clients) : sseClients(msg.url, msg.key, msg.clients);
    process.send!({ type: 'subscribed' });
  } else if (msg.type === 'finish') {
    const results = running?.results ?? [];
    const deadline = Date.now() + msg.waitMs;
    const check = () => {
      const ended = results.every((r) => r.operationCompleted && r.activitySawTerminal);
      if (!ended && Date.now() < deadline) return void setTimeout(check, 50);
      loop.disable();
      const loopDelayMs: LoopDelay = { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) };
      void running!.close().finally(() => process.send!({ type: 'result', clients: results, loopDelayMs }, () => process.exit(0)));
    };
    check();
  }
});
