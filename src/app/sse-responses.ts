/**
 * Subscriptions over SSE (graphql-yoga's distinct-connections mode) written straight to the node
 * response. yoga answers them with a web ReadableStream per subscriber: for each event it
 * serializes the result again, encodes four strings and enqueues them, and build-app relayed the
 * stream chunk by chunk, two socket writes per event. With 1,000 subscribers of one environment
 * that made each event cost 1,000 JSON.stringify calls and 2,000 writes, the last subscriber
 * waiting for all of them (SSE lag p99 334 ms against 199 ms over graphql-ws in bench:api).
 * Here yoga still parses, validates, authorizes and subscribes; `sseStreams` only keeps the
 * result stream for `writeEventStream`, which writes the bytes yoga's processor would have sent
 * (the same ping, `event: next` and `event: complete` blocks), each event's bytes made once per
 * result object (shared-events.ts hands one object to every subscriber of a group) and sent in one
 * write per subscriber.
 */
import type http from 'node:http';
import type { ExecutionResult } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';

/** Where the plugin leaves a subscription's results for the HTTP handler: pass one in the server context of each request. */
export interface SseSlot {
  results?: AsyncIterable<ExecutionResult>;
}

const HEADERS = { 'Content-Type': 'text/event-stream', Connection: 'keep-alive', 'Cache-Control': 'no-cache', 'Content-Encoding': 'none' };
const PING = Buffer.from(':\n\n');
const COMPLETE = Buffer.from('event: complete\ndata:\n\n');
// As yoga's processor: browsers may hold a stream back until bytes arrive; proxies drop idle ones.
const PING_MS = process.env.NODE_ENV === 'test' ? 300 : 12_000;

/**
 * The result's JSON as yoga's SSE processor writes it: without the `http` extension of the result
 * and the `http` and `unexpected` extensions of its errors, which are for the server only.
 */
function resultJson(result: ExecutionResult & { stringify?: (r: unknown) => string }): string {
  const stringify = result.stringify ?? JSON.stringify;
  const http = (result.extensions as { http?: unknown } | undefined)?.http;
  if (!result.errors?.length && !http) return stringify(result);
  const clean: Record<string, unknown> = { ...result };
  if (result.errors) {
    clean.errors = result.errors.map((e) => {
      const json = typeof e.toJSON === 'function' ? (e.toJSON() as { extensions?: Record<string, unknown> }) : (e as { extensions?: Record<string, unknown> });
      if (!json.extensions) return json;
      const { http: _h, unexpected: _u, ...extensions } = json.extensions;
      return { ...json, extensions: Object.keys(extensions).length ? extensions : undefined };
    });
  }
  if (result.extensions) {
    const { http: _h, ...extensions } = result.extensions as Record<string, unknown>;
    clean.extensions = Object.keys(extensions).length ? extensions : undefined;
  }
  return stringify(clean);
}

const encoded = new WeakMap<object, Buffer>();

/** An event's bytes, made once per result object: every subscriber of a group gets the same one. */
function eventBytes(result: ExecutionResult): Buffer {
  let bytes = encoded.get(result);
  if (!bytes) encoded.set(result, (bytes = Buffer.from(`event: next\ndata: ${resultJson(result)}\n\n`)));
  return bytes;
}

/**
 * The yoga plugin: where yoga's own SSE processor was chosen for a stream of results, keeps the
 * stream in the request's `SseSlot` and answers with headers only. A single result (an error
 * before any stream) still goes through yoga's processor.
 */
export const sseStreams: Plugin = {
  onResultProcess({ result, resultProcessor, setResultProcessor, serverContext }) {
    const slot = (serverContext as { sse?: SseSlot } | undefined)?.sse;
    // yoga exports no way to tell its processors apart but their names; another yoga falls back to its own, slower path.
    if (!slot || !isAsyncIterable(result) || resultProcessor?.name !== 'processSSEResult') return;
    slot.results = result as AsyncIterable<ExecutionResult>;
    setResultProcessor((_r, fetchAPI) => new fetchAPI.Response(null, { status: 200, headers: HEADERS }), 'text/event-stream');
  },
};

/**
 * Writes a subscription's events to the response until the stream completes (then `event:
 * complete`), the client leaves or `signal` aborts (the stream is ended at once either way, so
 * its bus listeners go with it). A slow client holds its stream at one unsent event, as yoga's
 * stream did: its operation watcher then skips superseded progress (bus `replaces`). An error of
 * the stream is thrown, as the web stream's was.
 */
export async function writeEventStream(res: http.ServerResponse, results: AsyncIterable<ExecutionResult>, signal: AbortSignal): Promise<void> {
  const it = results[Symbol.asyncIterator]();
  let closed = false;
  let ended = false;
  let wake: (() => void) | undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    wake?.();
    void it.return?.();
  };
  res.once('close', close);
  signal.addEventListener('abort', close, { once: true });
  res.write(PING);
  const ping = setInterval(() => {
    if (!res.writableLength && !closed) res.write(PING);
  }, PING_MS);
  try {
    for (;;) {
      let n: IteratorResult<ExecutionResult>;
      try {
        n = await it.next();
      } catch (err) {
        ended = true;
        throw err;
      }
      if (n.done) ended = true;
      if (closed) return;
      const sent = n.value != null ? res.write(eventBytes(n.value)) : true;
      if (n.done) {
        res.write(COMPLETE);
        return;
      }
      if (!sent) {
        await new Promise<void>((r) => {
          wake = r;
          res.once('drain', r);
        });
        res.off('drain', wake!);
        if (closed) return;
      }
    }
  } finally {
    clearInterval(ping);
    res.off('close', close);
    signal.removeEventListener('abort', close);
    // The stream ended or the connection did (close() ended the stream then): otherwise, as when a write failed, end it here.
    if (!ended && !closed) void it.return?.();
    closed = true;
  }
}
