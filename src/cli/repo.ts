/**
 * `backplane repo`: the storage engine's own command line, in the manner of restic's. Every
 * command works on one repository (`--repo` or BACKPLANE_REPO), prints text or, with `--json`,
 * one JSON value on stdout, draws a status line on stderr when that is a terminal, and fails
 * with one line `backplane: <error>` on stderr: exit code 2 for bad usage, 1 for failures,
 * 130 when interrupted.
 */
import { BackendAccessError } from '../destinations/backend.ts';
import { AbortedError, EngineError, Repository } from '../engine/api.ts';
import { formatOptions, GLOBAL_OPTIONS, parseCommandArgs, splitCommand, UsageError } from './repo-args.ts';
import type { Command, CommandContext } from './repo-context.ts';
import { openBackend, repoLocation, repoPassword } from './repo-open.ts';
import { ProgressLine } from './repo-progress.ts';
import { checkCommand, dumpCommand, lsCommand, restoreCommand, snapshotsCommand } from './repo-read.ts';
import { repairCommand } from './repo-repair.ts';
import { backupCommand, forgetCommand, initCommand, pruneCommand, unlockCommand } from './repo-write.ts';

const COMMANDS: Record<string, Command> = {
  init: initCommand,
  backup: backupCommand,
  snapshots: snapshotsCommand,
  ls: lsCommand,
  restore: restoreCommand,
  dump: dumpCommand,
  forget: forgetCommand,
  prune: pruneCommand,
  check: checkCommand,
  repair: repairCommand,
  unlock: unlockCommand,
};

function generalHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return [
    'usage: backplane repo <command> [options]',
    '',
    'Works with a restic-compatible repository (format version 2) directly.',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`),
    '',
    'options for every command:',
    formatOptions(GLOBAL_OPTIONS),
    '',
    'environment: BACKPLANE_REPO, BACKPLANE_REPO_PASSWORD; for s3: repositories AWS_ACCESS_KEY_ID,',
    'AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; BACKPLANE_DEBUG=1 prints stack traces on failure.',
    '`backplane repo <command> --help` for more.',
    '',
  ].join('\n');
}

function commandHelp(c: Command): string {
  const parts = [`usage: backplane repo ${c.usage}`, '', c.summary + '.'];
  if (c.description) parts.push('', c.description);
  if (Object.keys(c.options).length) parts.push('', 'options:', formatOptions(c.options));
  parts.push('', 'global options:', formatOptions(GLOBAL_OPTIONS), '');
  return parts.join('\n');
}

/** The streams and environment repoMain works with; tests of the real process use the defaults. */
export interface RepoIo {
  stdin: CommandContext['stdin'];
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

/** One line for the error message: multi-line messages (e.g. from the S3 SDK) are joined. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

function errorMessage(err: unknown, debug: boolean): string {
  if (debug && err instanceof Error && err.stack) return err.stack;
  if (err instanceof EngineError || err instanceof BackendAccessError || err instanceof UsageError) return oneLine(err.message);
  if (err instanceof Error) {
    const cause = err.cause instanceof Error && !err.message.includes(err.cause.message) ? `: ${err.cause.message}` : '';
    return oneLine(err.message + cause);
  }
  return oneLine(String(err));
}

/** Runs `backplane repo <argv…>`; returns the exit code. */
export async function repoMain(argv: string[], io: RepoIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const debug = Boolean(io.env.BACKPLANE_DEBUG);
  const fail = (err: unknown, code: number) => {
    io.stderr.write(`backplane: ${errorMessage(err, debug)}\n`);
    return code;
  };
  const { command: name, rest } = splitCommand(argv);
  if (name === undefined || name === 'help') {
    const topic = name === 'help' ? splitCommand(rest).command : undefined;
    if (topic && COMMANDS[topic]) {
      io.stdout.write(commandHelp(COMMANDS[topic]));
      return 0;
    }
    if (name === 'help' || rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(generalHelp());
      return 0;
    }
    io.stderr.write(generalHelp());
    return 2;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) return fail(new UsageError(`unknown command "${name}" (see backplane repo --help)`), 2);

  let parsed;
  try {
    parsed = parseCommandArgs(rest, command.options);
  } catch (err) {
    return fail(err, 2);
  }
  if (parsed.values.help) {
    io.stdout.write(commandHelp(command));
    return 0;
  }

  const json = parsed.values.json === true;
  const progress = new ProgressLine(io.stderr.isTTY && !parsed.values.quiet ? io.stderr : null);
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    // The first signal lets the engine stop cleanly (no snapshot, lock released); a second one
    // is the user insisting.
    if (++interrupts > 1) process.exit(130);
    controller.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const opened: Repository[] = [];
  const ctx: CommandContext = {
    values: parsed.values,
    positionals: parsed.positionals,
    env: io.env,
    json,
    signal: controller.signal,
    stdin: io.stdin,
    stdout: io.stdout,
    progress,
    async open() {
      const location = repoLocation(parsed.values, io.env);
      const password = await repoPassword(parsed.values, io.env);
      const backend = await openBackend(location, parsed.values, io.env);
      try {
        const repo = await Repository.open(backend, password, { signal: controller.signal });
        opened.push(repo);
        return repo;
      } catch (err) {
        await backend.close().catch(() => undefined);
        throw err;
      }
    },
    print(value, text) {
      io.stdout.write(json ? JSON.stringify(value) + '\n' : `${typeof text === 'function' ? text() : text}\n`);
    },
  };
  try {
    return await command.run(ctx);
  } catch (err) {
    progress.done();
    if (err instanceof UsageError) return fail(err, 2);
    if (err instanceof AbortedError || controller.signal.aborted) return fail(new Error('interrupted'), 130);
    return fail(err, 1);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const repo of opened) await repo.close().catch(() => undefined);
  }
}
