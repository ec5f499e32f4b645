/**
 * Backplane as a separate OS process (`backplane serve`, `worker` or `start`), for tests that
 * cross process boundaries: events over LISTEN/NOTIFY, shutdown on signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { processAlive } from '../../src/db/pg-server.ts';

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

/** The processes a test file starts, so that each test (or the file) can stop all it started. */
export function processGroup() {
  const started: ServerProcess[] = [];
  return {
    async start(env: NodeJS.ProcessEnv, command: 'serve' | 'worker' | 'start' = 'serve', opts: { group?: boolean } = {}): Promise<ServerProcess> {
      const p = await startServerProcess(env, command, opts);
      started.push(p);
      return p;
    },
    async stopAll(): Promise<void> {
      for (const p of started.splice(0)) await p.stop();
    },
  };
}

/** SIGKILL, as a crash or the OOM killer does: no chance to clean up. Resolves once it is gone. */
export async function killProcess(p: ServerProcess): Promise<void> {
  const gone = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGKILL');
  if (p.child.exitCode === null && p.child.signalCode === null) await gone;
}

/** Processes started by `pid` (by any of its threads), by command name (`pg_dump`, `psql`…). */
export async function childrenOf(pid: number, comm: string): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await fs.readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await fs.readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const child of text.split(' ').filter(Boolean).map(Number)) {
      if ((await fs.readFile(`/proc/${child}/comm`, 'utf8').catch(() => '')).trim() === comm) out.push(child);
    }
  }
  return out;
}

/** Whether process `pid` runs (a zombie, ended but not yet reaped, does not): for tests that wait on /proc. */
export async function alive(pid: number): Promise<boolean> {
  return processAlive(pid);
}

/** Live processes whose command line names a folder (pg_ctl, a postmaster, a restore_command). */
export { processesNaming } from '../../src/sources/pitr-instance.ts';
