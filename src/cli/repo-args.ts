/**
 * Argument handling for `backplane repo`: global options may come before or after the command
 * (`repo --repo X init` and `repo init --repo X` both work, as with restic), each command adds
 * its own options, and anything unknown is a usage error (exit code 2).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Bad arguments or a missing setting: printed as one line, exit code 2. */
export class UsageError extends Error {}

/** Option definitions in node:util parseArgs form, with a help line each. */
export type OptionSpec = NonNullable<ParseArgsConfig['options']>[string] & { help: string; arg?: string };
export type OptionSpecs = Record<string, OptionSpec>;

/** Options every command understands. */
export const GLOBAL_OPTIONS: OptionSpecs = {
  repo: { type: 'string', short: 'r', arg: 'LOCATION', help: 'repository: a directory, or s3:http(s)://host[:port]/bucket/prefix (default: $BACKPLANE_REPO)' },
  'password-file': { type: 'string', arg: 'FILE', help: 'read the password from FILE (default: $BACKPLANE_REPO_PASSWORD)' },
  cacert: { type: 'string', arg: 'FILE', help: 'also trust the PEM certificate(s) in FILE for S3 over HTTPS' },
  json: { type: 'boolean', help: 'print the result as one JSON object' },
  quiet: { type: 'boolean', short: 'q', help: 'no progress line' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

/** Values parsed by parseArgs: strings, booleans, and arrays of them for repeatable options. */
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

/**
 * Splits argv into the command name and the rest, skipping global options (and their values)
 * that come before the command.
 */
export function splitCommand(argv: string[]): { command: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return { command: argv[i + 1], rest: [...argv.slice(0, i), ...argv.slice(i + 2)] };
    if (a.startsWith('-')) {
      if (!a.includes('=') && takesValue(a)) i++;
      continue;
    }
    return { command: a, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { command: undefined, rest: argv };
}

function takesValue(flag: string): boolean {
  for (const [name, spec] of Object.entries(GLOBAL_OPTIONS)) {
    if (spec.type !== 'string') continue;
    if (flag === `--${name}` || (spec.short && flag === `-${spec.short}`)) return true;
  }
  return false;
}

/** Parses a command's arguments (global options included); unknown options are usage errors. */
export function parseCommandArgs(args: string[], options: OptionSpecs): { values: Values; positionals: string[] } {
  const all = { ...GLOBAL_OPTIONS, ...options };
  const config: ParseArgsConfig['options'] = {};
  for (const [name, { help: _help, arg: _arg, ...spec }] of Object.entries(all)) config[name] = spec;
  try {
    const { values, positionals } = parseArgs({ args, options: config, allowPositionals: true, strict: true });
    return { values: values as Values, positionals };
  } catch (err) {
    // parseArgs' messages are one sentence plus advice on a second line; keep the sentence.
    throw new UsageError(String((err as Error).message).split(/\n|\. (?=[A-Z])/)[0]);
  }
}

/** The help text of an option table. */
export function formatOptions(options: OptionSpecs): string {
  const rows = Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.type === 'string' ? ` ${spec.arg ?? 'VALUE'}` : ''}`;
    return [flag, spec.help + (spec.multiple ? ' (repeatable)' : '')] as const;
  });
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`).join('\n');
}

/** A string option's value, or undefined. */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A repeatable string option's values. */
export function strs(values: Values, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : [];
}

/** A non-negative integer option, or undefined when absent. */
export function int(values: Values, name: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} wants a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}
