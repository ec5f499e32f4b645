/**
 * Backplane as a separate OS process (`backplane serve`, `worker` or `start`), for tests that
 * cross process boundaries: events over LISTEN/NOTIFY, shutdown on signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** The process's JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  /** Fetches /metrics and returns one metric's value. */
  metric(name: string): Promise<number>;
  stop(): Promise<number | null>;
}

/**
 * `opts.group`: the process leads a process group of its own, as a command started in a terminal
 * does, so a test can signal the whole group the way Ctrl-C does (`process.kill(-pid, 'SIGINT')`).
 */
export async function startServerProcess(env: NodeJS.ProcessEnv, command: 'serve' | 'worker' | 'start' = 'serve', opts: { group?: boolean } = {}): Promise<ServerProcess> {
  const ready = command === 'worker' ? 'worker started' : 'listening';
  const logs: Array<Record<string, unknown>> = [];
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/backplane.js'), command], {
    cwd: ROOT,
    env: { ...env, PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.group ?? false,
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; port?: number };
        logs.push(rec);
        if (rec.msg === ready) resolve(rec.port ?? 0);
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${stderr}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    url: `${base}/graphql`,
    child,
    logs,
    async metric(name) {
      const text = await (await fetch(`${base}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(' ')[1]) : NaN;
    },
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      });
    },
  };
}

/**
 * Resolves once `read()` returns a value satisfying `ok`: a condition to wait on (a subscriber in
 * place, a process connected), polled briefly, never a fixed sleep standing in for it.
 */
export async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
