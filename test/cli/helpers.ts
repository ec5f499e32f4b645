/**
 * Runs the real `backplane repo` command as a child process (through bin/backplane.js, as a
 * user would) and collects its exit code, stdout (as bytes: dump writes binary) and stderr.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/backplane.js');

export const PASSWORD = 'cli test password';
/** Cheap scrypt for new keys (see kdfParams in src/cli/repo-open.ts); the key file records it. */
export const TEST_KDF = '1024,8,1';

export interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** stdout as text. */
  text: string;
  /** stdout parsed as JSON. */
  json<T = any>(): T;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  /** Bytes piped to stdin (stdin is /dev/null otherwise). */
  input?: Buffer;
}

/** Runs `backplane repo <args…>` and waits for it to exit. */
export async function repoCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, 'repo', ...args], {
    cwd: ROOT,
    env: { ...process.env, BACKPLANE_REPO_KDF: TEST_KDF, ...opts.env },
    stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  if (opts.input) child.stdin!.end(opts.input);
  const [code] = (await once(child, 'close')) as [number | null];
  const stdout = Buffer.concat(out);
  const text = stdout.toString('utf8');
  return {
    code,
    stdout,
    stderr,
    text,
    json() {
      try {
        return JSON.parse(text);
      } catch {
        throw new Error(`stdout is not JSON (exit ${code}):\n${text}\nstderr:\n${stderr}`);
      }
    },
  };
}

/** Asserts a successful run, with the output in the message when it is not. */
export function ok(r: CliResult): CliResult {
  if (r.code !== 0) throw new Error(`backplane repo exited with ${r.code}\nstdout: ${r.text}\nstderr: ${r.stderr}`);
  return r;
}
