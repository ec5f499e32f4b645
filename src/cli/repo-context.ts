/**
 * What every `backplane repo` command is given: its parsed arguments, an opener for the
 * repository, the output conventions (--json or text) and the abort signal that SIGINT fires.
 */
import type { Readable, Writable } from 'node:stream';
import type { Repository, Snapshot } from '../engine/api.ts';
import { UsageError, type OptionSpecs, type Values } from './repo-args.ts';
import type { ProgressLine } from './repo-progress.ts';

/** One invocation of a command. */
export interface CommandContext {
  values: Values;
  positionals: string[];
  env: NodeJS.ProcessEnv;
  /** --json: print one JSON object (or array) instead of text. */
  json: boolean;
  /** Fires on SIGINT/SIGTERM; the engine stops and leaves the repository valid. */
  signal: AbortSignal;
  stdin: Readable & { isTTY?: boolean };
  stdout: Writable;
  /** The status line (inactive unless stderr is a terminal and --quiet is not given). */
  progress: ProgressLine;
  /** Opens the repository given by --repo / BACKPLANE_REPO with the configured password. */
  open(): Promise<Repository>;
  /** Writes the result: `json` as JSON when --json was given, else `text` (a line is added). */
  print(json: unknown, text: string | (() => string)): void;
}

/** One `backplane repo` subcommand. */
export interface Command {
  /** e.g. `backup [options] <path>...` */
  usage: string;
  summary: string;
  /** Longer help, shown by `--help` after the usage line. */
  description?: string;
  options: OptionSpecs;
  /** Does the work; returns the exit code (0 ok, 1 failure). Throws UsageError for exit 2. */
  run(ctx: CommandContext): Promise<number>;
}

/**
 * Checks a snapshot argument: `latest` or a hex id prefix. The engine takes any string as a
 * prefix, and the empty one matches every snapshot: `forget ""` must not remove the only one.
 */
export function snapshotRef(ref: string): string {
  if (ref !== 'latest' && !/^[0-9a-f]{1,64}$/.test(ref)) throw new UsageError(`${JSON.stringify(ref)} is not a snapshot: give an id, an id prefix or latest`);
  return ref;
}

/** A snapshot as `snapshots --json` prints it: restic's field names plus `short_id`. */
export function snapshotJson(sn: Snapshot): Snapshot & { short_id: string } {
  return { ...sn, short_id: sn.id.slice(0, 8) };
}
