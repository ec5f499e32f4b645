/**
 * One PostgreSQL client tool as a child process: its exit as a promise, the tail of its stderr
 * for error messages, and a kill that escalates from SIGTERM to SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { PgToolError } from './errors.ts';

/** How long a tool has to exit after SIGTERM before it gets SIGKILL. */
export const KILL_GRACE_MS = 5_000;

/** Enough stderr to show the error that stopped a tool, not a whole verbose log. */
const STDERR_KEEP_BYTES = 8 * 1024;
const STDERR_SHOW_LINES = 8;

/** A started tool. */
export interface Tool {
  readonly name: string;
  readonly child: ChildProcess;
  /** The arguments it was started with (never holds a password: see connection.ts). */
  readonly args: readonly string[];
  /** Resolves once the process has exited and its stderr is read to the end; never rejects. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>;
  /** The error describing a failed exit, or null when it exited 0. */
  failure(exit: { code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }): Error | null;
  /** SIGTERM now, SIGKILL after KILL_GRACE_MS if still running. */
  kill(): void;
}

/**
 * Starts `command` with pipes for stdin/stdout as asked (or stdout into a descriptor of ours,
 * which the child gets a copy of) and stderr captured.
 */
export function startTool(
  command: string,
  args: readonly string[],
  opts: { env: NodeJS.ProcessEnv; stdin: 'pipe' | 'ignore' | number; stdout: 'pipe' | 'ignore' | number },
): Tool {
  // A process group of its own: Ctrl-C in a terminal signals the whole foreground group, and the
  // tool must not die under a job that Backplane is about to finish or hand back (it stops the
  // tool itself through the job's signal when it has to).
  const child = spawn(command, args, { env: opts.env, stdio: [opts.stdin, opts.stdout, 'pipe'], detached: true });
  let tail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => {
    tail = (tail + text).slice(-STDERR_KEEP_BYTES);
  });
  let killTimer: NodeJS.Timeout | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (spawnError) => {
      // A failed spawn emits no 'exit'.
      if (child.pid === undefined) resolve({ code: null, signal: null, spawnError });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(killTimer);
      const stderr = child.stderr!;
      if (stderr.readableEnded || stderr.destroyed) resolve({ code, signal });
      else stderr.once('close', () => resolve({ code, signal }));
    });
  });
  return {
    name: command,
    child,
    args,
    exited,
    failure(exit) {
      if (exit.spawnError) return new Error(`could not start ${command}: ${exit.spawnError.message}`, { cause: exit.spawnError });
      if (exit.code === 0) return null;
      const lines = tail.trimEnd().split('\n').slice(-STDERR_SHOW_LINES).join('\n');
      return new PgToolError(command, exit.code, exit.signal, lines);
    },
    kill() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      child.kill('SIGTERM');
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
    },
  };
}

/**
 * Kills `tools` when `signal` aborts (at once when it already has); returns the remover, to call
 * once the tools are done with, so a long-lived job signal does not keep them listed.
 */
export function killOnAbort(signal: AbortSignal | undefined, tools: readonly Tool[]): () => void {
  if (!signal) return () => {};
  const onAbort = () => tools.forEach((t) => t.kill());
  signal.addEventListener('abort', onAbort, { once: true });
  // Aborted before we listened: the listener above will never fire.
  if (signal.aborted) onAbort();
  return () => signal.removeEventListener('abort', onAbort);
}
