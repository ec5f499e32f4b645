/**
 * Probe: proves a destination works by writing, reading, listing and deleting one small object
 * beside the repository (never inside `data/`, `keys/`… where restic would try to read it), and
 * times each step. A failure says which of the three things people get wrong it was: a wrong
 * key (AUTH), a missing bucket (NO_BUCKET) or an endpoint nobody answers at (UNREACHABLE).
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { BackendAccessError, type Backend } from './backend.ts';
import { LocalBackend } from './local.ts';

export type ProbeStepName = 'WRITE' | 'READ' | 'LIST' | 'DELETE';
export type ProbeErrorKind = BackendAccessError['kind'];

export interface ProbeStep {
  step: ProbeStepName;
  ok: boolean;
  latencyMs: number;
  error?: string;
}

export interface ProbeResult {
  ok: boolean;
  steps: ProbeStep[];
  /** The first failure's kind and a sentence a person can act on. */
  errorKind?: ProbeErrorKind;
  error?: string;
}

const PROBE_PREFIX = 'backplane-probe-';

/** What each kind of failure means, for people. */
export function explainAccessError(err: unknown): { kind: ProbeErrorKind; message: string } {
  if (err instanceof BackendAccessError) {
    switch (err.kind) {
      case 'AUTH':
        return { kind: 'AUTH', message: `The storage refused the credentials: check the access key id and secret (${err.message})` };
      case 'NO_BUCKET':
        return { kind: 'NO_BUCKET', message: `The bucket does not exist: create it or correct its name (${err.message})` };
      case 'UNREACHABLE':
        return { kind: 'UNREACHABLE', message: `Nothing answers at the endpoint: check the URL, DNS and firewall (${err.message})` };
      default:
        return { kind: 'IO', message: err.message };
    }
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EPERM') return { kind: 'AUTH', message: `No permission to write the directory: ${(err as Error).message}` };
  if (code === 'ENOENT') return { kind: 'NO_BUCKET', message: `The directory does not exist: ${(err as Error).message}` };
  return { kind: 'IO', message: (err as Error)?.message ?? String(err) };
}

export interface ProbeOps {
  write(name: string, body: Buffer): Promise<void>;
  read(name: string): Promise<Buffer>;
  list(): Promise<string[]>;
  remove(name: string): Promise<void>;
}

/**
 * The local probe's steps, run by a child process: a file system call that never returns (a
 * recursive mkdir under /proc in Node 20, a hung network mount) holds a libuv thread for good, and
 * only a process can be killed. Each step is reported as a JSON line when it starts and ends.
 */
const LOCAL_PROBE_CHILD = `
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
const [root, name, hex] = process.argv.slice(1);
const body = Buffer.from(hex, 'hex');
const file = join(root, name);
const say = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
async function run(step, fn) {
  say({ started: step });
  const t = performance.now();
  try {
    await fn();
    say({ step, ok: true, latencyMs: Math.round(performance.now() - t) });
    return true;
  } catch (e) {
    say({ step, ok: false, latencyMs: Math.round(performance.now() - t), error: e.message, code: e.code });
    return false;
  }
}
// The repository directory is made on first use, like restic init; the probe may be first.
if (await run('WRITE', async () => { await mkdir(root, { recursive: true }); await writeFile(file, body); })) {
  await run('READ', async () => { if (!(await readFile(file)).equals(body)) throw new Error('the object read back differs from the one written'); });
  await run('LIST', async () => { if (!(await readdir(root)).includes(name)) throw new Error('the object written does not appear in the listing'); });
  await run('DELETE', () => rm(file, { force: true }));
}
`;

/** Default time the local probe may take before it is stopped and reported as not answering. */
export const LOCAL_PROBE_TIMEOUT_MS = 15_000;

function probeLocal(b: LocalBackend, name: string, body: Buffer, timeoutMs: number, signal?: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolvePromise) => {
    const steps: ProbeStep[] = [];
    let failure: { kind: ProbeErrorKind; message: string } | undefined;
    let current: { step: ProbeStepName; at: number } | null = null;
    const { NODE_OPTIONS: _loader, ...env } = process.env;
    const child = spawn(process.execPath, ['--input-type=module', '-e', LOCAL_PROBE_CHILD, b.root, name, body.toString('hex')], { stdio: ['ignore', 'pipe', 'ignore'], env });
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let m: { started?: ProbeStepName; step?: ProbeStepName; ok?: boolean; latencyMs?: number; error?: string; code?: string };
        try {
          m = JSON.parse(line) as typeof m;
        } catch {
          continue; // not one of the child's reports (a warning printed by node itself)
        }
        if (m.started) {
          current = { step: m.started, at: performance.now() };
        } else if (m.step) {
          current = null;
          if (m.ok) {
            steps.push({ step: m.step, ok: true, latencyMs: m.latencyMs ?? 0 });
          } else {
            const { kind, message } = explainAccessError(Object.assign(new Error(m.error), { code: m.code }));
            steps.push({ step: m.step, ok: false, latencyMs: m.latencyMs ?? 0, error: message });
            failure ??= { kind, message };
          }
        }
      }
    });
    const stop = (why: string) => {
      child.kill('SIGKILL');
      const message = `The directory did not answer ${why}; the check was stopped (a hung mount or a pseudo-filesystem?)`;
      if (current) steps.push({ step: current.step, ok: false, latencyMs: Math.round(performance.now() - current.at), error: message });
      failure ??= { kind: 'UNREACHABLE', message };
      finish();
    };
    const timer = setTimeout(() => stop(`within ${Math.round(timeoutMs / 100) / 10} s`), timeoutMs);
    const onAbort = () => stop('before the request was cancelled');
    signal?.addEventListener('abort', onAbort, { once: true });
    let done = false;
    function finish() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolvePromise({ ok: !failure, steps, ...(failure ? { errorKind: failure.kind, error: failure.message } : {}) });
    }
    child.on('error', (err) => {
      failure ??= { kind: 'IO', message: `The probe could not start: ${err.message}` };
      finish();
    });
    child.on('exit', (code) => {
      if (!done && code !== 0 && !failure) failure = { kind: 'IO', message: `The probe stopped with exit code ${code}` };
      finish();
    });
  });
}

/**
 * Writes, reads, lists and deletes a probe object; stops at the first failing step. A local
 * directory that does not answer within `timeoutMs` is a failed probe (UNREACHABLE).
 */
export async function probeBackend(backend: Backend, signal?: AbortSignal, opts: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const name = `${PROBE_PREFIX}${randomBytes(8).toString('hex')}`;
  const body = randomBytes(1024);
  if (backend instanceof LocalBackend) return probeLocal(backend, name, body, opts.timeoutMs ?? LOCAL_PROBE_TIMEOUT_MS, signal);
  // Only here does a probe need the AWS SDK: loaded then, so a server using local destinations
  // never holds it (each thread that loads it keeps a few MiB of its code).
  const ops = (await import('./s3-probe.ts')).s3ProbeOps(backend, PROBE_PREFIX, signal);
  if (!ops) throw new TypeError(`no probe for ${backend.location}`);
  const steps: ProbeStep[] = [];
  const run = async (step: ProbeStepName, fn: () => Promise<void>): Promise<boolean> => {
    const started = performance.now();
    try {
      await fn();
      steps.push({ step, ok: true, latencyMs: Math.round(performance.now() - started) });
      return true;
    } catch (err) {
      const { kind, message } = explainAccessError(err);
      steps.push({ step, ok: false, latencyMs: Math.round(performance.now() - started), error: message });
      failure ??= { kind, message };
      return false;
    }
  };
  let failure: { kind: ProbeErrorKind; message: string } | undefined;
  const written = await run('WRITE', () => ops.write(name, body));
  if (written) {
    await run('READ', async () => {
      const back = await ops.read(name);
      if (!back.equals(body)) throw new BackendAccessError('IO', 'the object read back differs from the one written');
    });
    await run('LIST', async () => {
      if (!(await ops.list()).includes(name)) throw new BackendAccessError('IO', 'the object written does not appear in the listing');
    });
    await run('DELETE', () => ops.remove(name));
  }
  return { ok: !failure, steps, ...(failure ? { errorKind: failure.kind, error: failure.message } : {}) };
}
