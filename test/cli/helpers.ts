/**
 * Runs the real `backplane repo` command as a child process and collects its exit code, stdout
 * (as bytes: dump writes binary) and stderr. By default through src/cli/repo-entry.ts, the
 * command without the server modules that bin/backplane.js loads first (so a half-finished
 * schema elsewhere does not fail these tests, and each run starts in a second, not three);
 * `viaBin` goes through bin/backplane.js exactly as a user would.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/backplane.js');
/** argv that starts `backplane repo` (append the command and its arguments). */
export const REPO_ARGV: readonly string[] = [process.execPath, '--import', 'tsx', path.join(ROOT, 'src/cli/repo-entry.ts')];

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
  /** Run through bin/backplane.js (`backplane repo …`) instead of the repo entry point. */
  viaBin?: boolean;
}

/** Runs `backplane repo <args…>` and waits for it to exit. */
export async function repoCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const [program, ...prefix] = opts.viaBin ? [process.execPath, BIN, 'repo'] : REPO_ARGV;
  const child = spawn(program, [...prefix, ...args], {
    cwd: ROOT,
    // The files cache goes to a folder of the tests, not the user's ~/.cache (entries are per repository id).
    env: { ...process.env, BACKPLANE_REPO_KDF: TEST_KDF, BACKPLANE_CACHE_DIR: path.join(os.tmpdir(), 'bp-cli-test-cache'), ...opts.env },
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
