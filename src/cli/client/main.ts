/**
 * The client commands (`backplane snapshot …`, `backplane operation …`): a command line over the
 * GraphQL API for people and CI scripts. Loads no server code: it speaks to a running server
 * with an API key, like any other client.
 *
 * Exit codes: 0 success, 1 the operation failed or the server refused the request, 2 usage,
 * 3 the operation was cancelled, 4 the server could not be reached, 5 the API key was refused,
 * 130 interrupted (Ctrl-C) while waiting: the operation itself goes on.
 */
import { stat } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiError, AuthError, ClientUsageError, ConnectionError, createApiClient, refusedBy, type ApiClient } from './api.ts';
import { downloadSnapshot } from './download.ts';
import { resolveEnvironment } from './environment-ref.ts';
import { ClientCreateSnapshotDocument, ClientImportDumpDocument, ClientRestoreSnapshotDocument, ClientSnapshotsDocument, type DownloadVariant, type SnapshotContents, type SnapshotKind, type SnapshotStatus } from './generated/graphql.ts';
import { createProgressView, formatBytes } from './progress.ts';
import { uploadRequest } from './upload.ts';
import { watchOperation, type OperationState } from './watch.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2, cancelled: 3, connection: 4, auth: 5 } as const;

export const CLIENT_USAGE = `client commands, over a running server's API (server and key: --url/--token or BACKPLANE_URL/BACKPLANE_TOKEN):

  snapshot create   --env <env> [--db-only | --files-only] [--label L] [--wait] [--json]
  snapshot list     --env <env> [--kind K] [--status S] [--includes DATABASE_ONLY|FILES_ONLY|DATABASE_AND_FILES] [--json]
  snapshot restore  <snapshot> [--into <env>] [--no-safety-snapshot] [--wait] [--json]
  snapshot download <snapshot> [--variant DATABASE_AND_FILES|DATABASE_ONLY|FILES_ONLY] [-o file] [--json]
  operation watch   <operation> [--json]
  import            <file> --env <env> [--no-safety-snapshot] [--wait] [--json]

import uploads a dump (plain SQL, pg_dump custom or tar format; raw, .gz or .zst: told by its
content) and restores it into the environment like a snapshot, a safety snapshot first.

<env> is an environment's id, project/environment, or a name no other environment has. --wait
follows the operation to its end with a progress bar (one JSON line per change with --json); a
lost connection is resumed. Exit codes: 0 success, 1 failed, 2 usage, 3 cancelled, 4 server
unreachable, 5 API key refused.
`;

interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

const COMMON = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ClientUsageError((err as Error).message);
  }
}

function connect(values: { url?: string; token?: string }, env: NodeJS.ProcessEnv): ApiClient {
  const url = values.url ?? env.BACKPLANE_URL;
  const token = values.token ?? env.BACKPLANE_TOKEN;
  if (!url) throw new ClientUsageError('no server: pass --url or set BACKPLANE_URL (e.g. http://localhost:4000/graphql)');
  if (!token) throw new ClientUsageError('no API key: pass --token or set BACKPLANE_TOKEN (backplane api-key create)');
  try {
    return createApiClient({ url, token });
  } catch (err) {
    throw new ClientUsageError((err as Error).message);
  }
}

function oneOf<T extends string>(what: string, value: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (value === undefined) return undefined;
  const list = value.split(',').map((v) => v.trim().toUpperCase());
  for (const v of list) if (!allowed.includes(v as T)) throw new ClientUsageError(`--${what} ${v}: expected one of ${allowed.join(', ')}`);
  return list as T[];
}

/** Follows the operation; the exit code says how it ended, its error goes to stderr. */
async function follow(api: ApiClient, operationId: string, io: Io, json: boolean, first?: OperationState): Promise<number> {
  const view = createProgressView(io.stdout, io.stderr, { json });
  if (first) view.update(first);
  // Ctrl-C stops the watching, not the work: say how to pick it up again.
  const onInterrupt = () => {
    view.end();
    io.stderr.write(`backplane: stopped watching; operation ${operationId} goes on on the server (backplane operation watch ${operationId})\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  let end: OperationState;
  try {
    end = await watchOperation(api, operationId, {
      onState: (s) => view.update(s),
      onReconnect: (err, delayMs) => view.note(`backplane: ${err.message}; reconnecting in ${(delayMs / 1000).toFixed(2)}s`),
    });
  } finally {
    process.off('SIGINT', onInterrupt);
    view.end();
  }
  if (end.status === 'SUCCEEDED') {
    if (!json) io.stdout.write(`operation ${end.id} succeeded${end.snapshot ? ` (snapshot ${end.snapshot.id} ${end.snapshot.status})` : ''}\n`);
    return EXIT.ok;
  }
  const cancelled = end.status === 'CANCELLED';
  io.stderr.write(`backplane: operation ${end.id} ${cancelled ? 'was cancelled' : 'failed'}${end.error ? `: ${end.error}` : ''}\n`);
  return cancelled ? EXIT.cancelled : EXIT.failed;
}

async function snapshotCreate(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    env: { type: 'string' },
    'db-only': { type: 'boolean', default: false },
    'files-only': { type: 'boolean', default: false },
    label: { type: 'string' },
    wait: { type: 'boolean', default: false },
  });
  if (positionals.length) throw new ClientUsageError(`snapshot create takes no arguments (got ${positionals.join(' ')})`);
  if (!values.env) throw new ClientUsageError('snapshot create needs --env <env>');
  if (values['db-only'] && values['files-only']) throw new ClientUsageError('--db-only and --files-only exclude each other');
  const api = connect(values, io.env);
  const environmentId = await resolveEnvironment(api, values.env);
  const includes = values['db-only'] ? (['DB'] as const) : values['files-only'] ? (['FILES'] as const) : undefined;
  const { createSnapshot: r } = await api.request(ClientCreateSnapshotDocument, {
    input: { environmentId, label: values.label, ...(includes ? { includes: [...includes] } : {}) },
  });
  if (r.__typename !== 'SnapshotOperationPayload') refusedBy(r);
  if (!values.wait) {
    io.stdout.write(values.json ? `${JSON.stringify({ snapshot: r.snapshot, operation: r.operation })}\n` : `snapshot ${r.snapshot.id} started: operation ${r.operation.id}\n`);
    return EXIT.ok;
  }
  if (!values.json) io.stdout.write(`snapshot ${r.snapshot.id}, operation ${r.operation.id}\n`);
  return follow(api, r.operation.id, io, values.json, r.operation);
}

const KINDS = ['MANUAL', 'SCHEDULED', 'PRE_DEPLOY', 'SAFETY', 'IMPORT'] as const satisfies readonly SnapshotKind[];
const CONTENTS = ['DATABASE_ONLY', 'FILES_ONLY', 'DATABASE_AND_FILES'] as const satisfies readonly SnapshotContents[];
const STATUSES = ['CREATING', 'READY', 'FAILED', 'DAMAGED', 'DELETING', 'DELETED'] as const satisfies readonly SnapshotStatus[];

async function snapshotList(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { env: { type: 'string' }, kind: { type: 'string' }, status: { type: 'string' }, includes: { type: 'string' } });
  if (positionals.length) throw new ClientUsageError(`snapshot list takes no arguments (got ${positionals.join(' ')})`);
  if (!values.env) throw new ClientUsageError('snapshot list needs --env <env>');
  const includes = oneOf('includes', values.includes, CONTENTS);
  if (includes && includes.length > 1) throw new ClientUsageError('--includes takes one of ' + CONTENTS.join(', '));
  const filter = { kinds: oneOf('kind', values.kind, KINDS), statuses: oneOf('status', values.status, STATUSES), includes: includes?.[0] };
  const api = connect(values, io.env);
  const id = await resolveEnvironment(api, values.env);
  const rows = [];
  let after: string | null | undefined;
  do {
    const { environment } = await api.request(ClientSnapshotsDocument, { id, after, filter });
    if (!environment) throw new ApiError(`environment ${values.env} not found`, 'ENVIRONMENT_NOT_FOUND');
    rows.push(...environment.snapshots.edges.map((e) => e.node));
    after = environment.snapshots.pageInfo.hasNextPage ? environment.snapshots.pageInfo.endCursor : undefined;
  } while (after);
  if (values.json) {
    io.stdout.write(`${JSON.stringify(rows)}\n`);
    return EXIT.ok;
  }
  const table = [['ID', 'KIND', 'STATUS', 'INCLUDES', 'SIZE', 'CREATED', 'LABEL']];
  for (const s of rows) table.push([s.id, s.kind, s.status, s.includes.join('+'), formatBytes(Number(s.sizeBytes)), s.createdAt, s.label ?? '']);
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table) io.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  return EXIT.ok;
}

async function snapshotRestore(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    into: { type: 'string' },
    'no-safety-snapshot': { type: 'boolean', default: false },
    wait: { type: 'boolean', default: false },
  });
  if (positionals.length !== 1) throw new ClientUsageError('snapshot restore needs one <snapshot> id');
  const api = connect(values, io.env);
  const targetEnvironmentId = values.into ? await resolveEnvironment(api, values.into) : undefined;
  const { restoreSnapshot: r } = await api.request(ClientRestoreSnapshotDocument, {
    input: { snapshotId: positionals[0]!, targetEnvironmentId, createSafetySnapshot: !values['no-safety-snapshot'] },
  });
  if (r.__typename !== 'RestorePayload') refusedBy(r);
  if (!values.wait) {
    io.stdout.write(values.json ? `${JSON.stringify({ restoreLog: r.restoreLog, operation: r.operation })}\n` : `restore ${r.restoreLog.id} started: operation ${r.operation.id}\n`);
    return EXIT.ok;
  }
  if (!values.json) io.stdout.write(`restore ${r.restoreLog.id}, operation ${r.operation.id}\n`);
  return follow(api, r.operation.id, io, values.json, r.operation);
}

const VARIANTS = ['DATABASE_AND_FILES', 'DATABASE_ONLY', 'FILES_ONLY'] as const satisfies readonly DownloadVariant[];

async function snapshotDownload(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { variant: { type: 'string' }, output: { type: 'string', short: 'o' } });
  if (positionals.length !== 1) throw new ClientUsageError('snapshot download needs one <snapshot> id');
  const variant = oneOf('variant', values.variant, VARIANTS);
  if (variant && variant.length > 1) throw new ClientUsageError('--variant takes one value');
  const file = await downloadSnapshot(connect(values, io.env), {
    snapshotId: positionals[0]!,
    variant: variant?.[0],
    output: values.output,
    out: io.stdout,
    err: io.stderr,
    json: values.json,
  });
  io.stdout.write(values.json ? `${JSON.stringify({ event: 'saved', file })}\n` : `saved ${file}\n`);
  return EXIT.ok;
}

async function operationWatch(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (positionals.length !== 1) throw new ClientUsageError('operation watch needs one <operation> id');
  return follow(connect(values, io.env), positionals[0]!, io, values.json);
}

async function importDump(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    env: { type: 'string' },
    'no-safety-snapshot': { type: 'boolean', default: false },
    wait: { type: 'boolean', default: false },
  });
  if (positionals.length !== 1) throw new ClientUsageError('import needs one <file>');
  if (!values.env) throw new ClientUsageError('import needs --env <env>');
  const file = positionals[0]!;
  try {
    if (!(await stat(file)).isFile()) throw new ClientUsageError(`${file} is not a file`);
  } catch (err) {
    if (err instanceof ClientUsageError) throw err;
    throw new ClientUsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const api = connect(values, io.env);
  const environmentId = await resolveEnvironment(api, values.env);
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true && !values.json;
  let shown = 0;
  const { importDump: r } = await uploadRequest({
    url: api.url,
    token: (values.token ?? io.env.BACKPLANE_TOKEN)!,
    doc: ClientImportDumpDocument,
    variables: { input: { environmentId, file: null, createSafetySnapshot: !values['no-safety-snapshot'] } },
    filePath: 'input.file',
    file,
    // A terminal sees the upload move (a few redraws a second); pipes and --json get no noise.
    onProgress: (sent, total) => {
      if (!tty || (Date.now() - shown < 200 && sent < total)) return;
      shown = Date.now();
      io.stderr.write(`\ruploading ${formatBytes(sent)} / ${formatBytes(total)} (${total ? Math.floor((sent / total) * 100) : 100}%)\x1b[K${sent === total ? '\n' : ''}`);
    },
  });
  if (r.__typename !== 'ImportDumpPayload') refusedBy(r);
  if (!values.wait) {
    io.stdout.write(values.json ? `${JSON.stringify({ restoreLog: r.restoreLog, snapshot: r.snapshot, operation: r.operation })}\n` : `import ${r.restoreLog.id} started: operation ${r.operation.id}\n`);
    return EXIT.ok;
  }
  if (!values.json) io.stdout.write(`import ${r.restoreLog.id}, operation ${r.operation.id}\n`);
  return follow(api, r.operation.id, io, values.json, r.operation);
}

const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  'snapshot create': snapshotCreate,
  'snapshot list': snapshotList,
  'snapshot restore': snapshotRestore,
  'snapshot download': snapshotDownload,
  'operation watch': operationWatch,
};

/** Runs one client command; returns the exit code. */
export async function clientMain(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  // `import <file>`: a command of one word, whose next word is its argument.
  const [group, sub, ...rest] = argv[0] === 'import' ? ['import', '', ...argv.slice(1)] : argv;
  const run = group === 'import' ? importDump : (COMMANDS[`${group} ${sub}`] as ((args: string[], io: Io) => Promise<number>) | undefined);
  try {
    if (run ? rest.includes('--help') || rest.includes('-h') : sub === '--help' || sub === '-h') {
      io.stdout.write(CLIENT_USAGE);
      return EXIT.ok;
    }
    if (!run) throw new ClientUsageError(`unknown command: ${[group, sub].filter(Boolean).join(' ')}\n\n${CLIENT_USAGE}`);
    return await run(rest, io);
  } catch (err) {
    const [code, text] =
      err instanceof ClientUsageError ? [EXIT.usage, err.message]
      : err instanceof AuthError ? [EXIT.auth, err.message]
      : err instanceof ConnectionError ? [EXIT.connection, err.message]
      : err instanceof ApiError ? [EXIT.failed, err.code ? `${err.message} [${err.code}]` : err.message]
      : [EXIT.failed, (err as Error).stack ?? String(err)];
    io.stderr.write(`backplane: ${text}\n`);
    return code;
  }
}
