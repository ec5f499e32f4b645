/**
 * Serves the web console's files (built by scripts/build.mjs into dist/console/): `/` is its
 * index.html, `/assets/<name>-<hash>.<ext>` the bundles. The console is a client of the public
 * API like any other; this is the only thing the server does for it.
 */
import fs from 'node:fs/promises';
import type http from 'node:http';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

// From the bundle (dist/*.mjs) the folder is beside it; from the sources (tsx), in dist/ above src/.
const CANDIDATES = [new URL('./console/', import.meta.url), new URL('../../dist/console/', import.meta.url)].map((u) => fileURLToPath(u));

async function consoleDir(): Promise<string | null> {
  for (const dir of CANDIDATES) {
    try {
      await fs.access(dir + 'index.html');
      return dir;
    } catch {
      // not this one
    }
  }
  return null;
}

/**
 * Only this server's own scripts and styles, and requests to this origin: over HTTP and, for
 * subscriptions, over WebSocket (which 'self' does not cover in every browser).
 */
export function contentSecurityPolicy(host: string | undefined, publicUrl: string | undefined): string {
  const origin = publicUrl ? new URL(publicUrl).host : host;
  const ws = origin && /^[A-Za-z0-9.\-:[\]]+$/.test(origin) ? ` ws://${origin} wss://${origin}` : '';
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src 'self'${ws}`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Answers a request for `/` or `/assets/…`. */
export async function serveConsole(req: http.IncomingMessage, res: http.ServerResponse, path: string, publicUrl: string | undefined) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end(JSON.stringify({ error: 'method not allowed' }));
    return;
  }
  const dir = await consoleDir();
  if (!dir) {
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('The web console is not built: run `npm run build`. The API is at /graphql.\n');
    return;
  }
  const common = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };
  if (path === '/' || path === '/index.html') {
    const body = await fs.readFile(dir + 'index.html');
    res.writeHead(200, {
      ...common,
      'content-type': 'text/html; charset=utf-8',
      // The page names the current hashed bundles: always ask again, so an upgrade shows at once.
      'cache-control': 'no-cache',
      'content-security-policy': contentSecurityPolicy(req.headers.host, publicUrl),
      'x-frame-options': 'DENY',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const name = path.slice('/assets/'.length);
  const ext = /\.[a-z0-9]+$/.exec(name)?.[0] ?? '';
  let body: Buffer | null = null;
  if (/^[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+$/.test(name) && TYPES[ext]) {
    body = await fs.readFile(dir + 'assets/' + name).catch(() => null);
  }
  if (!body) {
    res.writeHead(404, { ...common, 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
    return;
  }
  // The name carries a hash of the content: it never changes under the same name.
  res.writeHead(200, { ...common, 'content-type': TYPES[ext], 'cache-control': 'public, max-age=31536000, immutable', 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}
