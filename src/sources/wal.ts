/**
 * The physical side of a PostgreSQL cluster, for point-in-time recovery.
 *
 * Words used here:
 * - *cluster*: one PostgreSQL server (data directory), named by its *system identifier* (decimal).
 * - *LSN*: a WAL position, written `X/Y` (two hex halves); a *segment* is one WAL file of
 *   `wal_segment_size` bytes, named `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, then the segment number).
 * - *base backup*: `pg_basebackup -D - -F tar -X none`: the data directory as one tar on stdout,
 *   consistent once the WAL from its start to its end LSN is replayed.
 * - *slot*: a physical replication slot: the server keeps WAL the streamer has not confirmed.
 * - *streamer*: `pg_receivewal` writing segments (and the current `.partial`) into a spool folder.
 */
import { execFile } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import pg from 'pg';
import { startTool, type Tool } from './child.ts';
import { pgTarget, toolEnv } from './connection.ts';
import { AbortedError, SourceError } from './errors.ts';
import { withClient } from './pg-admin.ts';

/** What decides whether a server can be archived, read from the server itself. */
export interface WalSourceFacts {
  systemIdentifier: string;
  timeline: number;
  walLevel: string;
  maxWalSenders: number;
  role: string;
  /** REPLICATION attribute or superuser. */
  canReplicate: boolean;
  serverVersion: string;
  serverMajor: number;
  walSegmentSize: number;
  /** Tablespaces besides pg_default and pg_global (pg_basebackup to stdout takes only one). */
  extraTablespaces: string[];
  /** Why a replication connection failed (pg_hba, max_wal_senders reached…), if it did. */
  replicationConnectError: string | null;
}

/** Reads the settings PITR needs; a replication connection proves pg_hba lets us stream. */
export async function inspectWalSource(databaseUrl: string): Promise<WalSourceFacts> {
  const facts = await withClient(databaseUrl, async (c) => {
    const one = async <T>(sql: string) => (await c.query(sql)).rows[0] as T;
    const walLevel = (await one<{ wal_level: string }>('SHOW wal_level')).wal_level;
    const maxWalSenders = Number((await one<{ max_wal_senders: string }>('SHOW max_wal_senders')).max_wal_senders);
    const role = await one<{ rolname: string; rolreplication: boolean; rolsuper: boolean }>('SELECT rolname, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user');
    const version = await one<{ v: string; n: string }>("SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n");
    const seg = await one<{ s: string }>("SELECT setting AS s FROM pg_settings WHERE name = 'wal_segment_size'");
    const spaces = (await c.query<{ spcname: string }>("SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1")).rows;
    return {
      walLevel,
      maxWalSenders,
      role: role.rolname,
      canReplicate: role.rolreplication || role.rolsuper,
      serverVersion: version.v,
      serverMajor: Math.floor(Number(version.n) / 10000),
      walSegmentSize: Number(seg.s),
      extraTablespaces: spaces.map((s) => s.spcname),
    };
  });
  let identity: { systemIdentifier: string; timeline: number } | null = null;
  let replicationConnectError: string | null = null;
  if (facts.canReplicate && facts.maxWalSenders > 0 && facts.walLevel !== 'minimal') {
    try {
      identity = await identifySystem(databaseUrl);
    } catch (err) {
      replicationConnectError = (err as Error).message;
    }
  }
  if (!identity) {
    // Without a replication connection, the control file still names the cluster.
    const row = await withClient(databaseUrl, async (c) => (await c.query<{ id: string; tli: number }>('SELECT system_identifier::text AS id, timeline_id AS tli FROM pg_control_system(), pg_control_checkpoint()')).rows[0]).catch(() => null);
    identity = { systemIdentifier: row?.id ?? '', timeline: row?.tli ?? 0 };
  }
  return { ...facts, ...identity, replicationConnectError };
}

/** The replication protocol's IDENTIFY_SYSTEM: the cluster's identifier and current timeline. */
export async function identifySystem(databaseUrl: string): Promise<{ systemIdentifier: string; timeline: number; xlogpos: string }> {
  const client = new pg.Client({ connectionString: databaseUrl, replication: true, application_name: 'backplane' } as pg.ClientConfig);
  client.on('error', () => {});
  await client.connect();
  try {
    const row = (await client.query('IDENTIFY_SYSTEM')).rows[0] as { systemid: string; timeline: string | number; xlogpos: string };
    return { systemIdentifier: String(row.systemid), timeline: Number(row.timeline), xlogpos: row.xlogpos };
  } finally {
    await client.end().catch(() => {});
  }
}

let localMajorCache: Promise<number> | undefined;

/** The major version of the local client binaries (pg_basebackup, pg_receivewal) recovery uses. */
export function localPgMajor(): Promise<number> {
  localMajorCache ??= new Promise((resolve, reject) =>
    execFile('pg_basebackup', ['--version'], (err, stdout) => {
      if (err) return reject(new Error('pg_basebackup is not installed (PostgreSQL client binaries are needed for point-in-time recovery)', { cause: err }));
      const m = /(\d+)(?:\.\d+)?/.exec(stdout);
      if (!m) return reject(new Error(`cannot read pg_basebackup's version from ${JSON.stringify(stdout.trim())}`));
      resolve(Number(m[1]));
    }),
  );
  return localMajorCache;
}

/** What the user must change on the server before its WAL can be archived; empty when nothing. */
export function walSourceProblems(f: WalSourceFacts, localMajor: number): string[] {
  const problems: string[] = [];
  if (f.walLevel !== 'replica' && f.walLevel !== 'logical') problems.push(`wal_level is ${f.walLevel}: set wal_level = replica (or logical) and restart the server`);
  if (f.maxWalSenders < 1) problems.push('max_wal_senders is 0: set max_wal_senders to at least 2 (one for the WAL streamer, one for base backups) and restart the server');
  if (!f.canReplicate) problems.push(`role ${f.role} may not replicate: ALTER ROLE ${f.role} WITH REPLICATION (or use a superuser)`);
  // Recovery runs the local binaries, which replay WAL of their own major version only.
  if (f.serverMajor > localMajor) problems.push(`the server runs PostgreSQL ${f.serverVersion}, newer than the local PostgreSQL ${localMajor} binaries: install PostgreSQL ${f.serverMajor} client and server binaries where Backplane runs`);
  else if (f.serverMajor < localMajor) problems.push(`the server runs PostgreSQL ${f.serverVersion}, but the local binaries are PostgreSQL ${localMajor}, which cannot replay its WAL: use PostgreSQL ${localMajor} on the server or install PostgreSQL ${f.serverMajor} binaries where Backplane runs`);
  if (f.extraTablespaces.length) problems.push(`the cluster has tablespaces besides pg_default (${f.extraTablespaces.join(', ')}): base backups to a single tar take the default tablespace only`);
  if (!problems.length && f.replicationConnectError) problems.push(`a replication connection was refused (${f.replicationConnectError}): allow it in pg_hba.conf (a "host replication ${f.role} <address> scram-sha-256" line) and reload`);
  return problems;
}

// ---------------------------------------------------------------- LSNs and file names

export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');

/** The name of the segment holding `lsn` on timeline `tli` (PostgreSQL's XLogFileName). */
export function walFileName(tli: number, lsn: bigint, segmentSize: number): string {
  const segNo = lsn / BigInt(segmentSize);
  const perId = 0x100000000n / BigInt(segmentSize);
  return `${hex8(tli)}${hex8(segNo / perId)}${hex8(segNo % perId)}`;
}

/** The first LSN of a segment file name, and its timeline. */
export function segmentStart(name: string, segmentSize: number): { timeline: number; lsn: bigint } {
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})/.exec(name);
  if (!m) throw new Error(`not a WAL segment name: ${name}`);
  const perId = 0x100000000n / BigInt(segmentSize);
  return { timeline: parseInt(m[1], 16), lsn: (BigInt(`0x${m[2]}`) * perId + BigInt(`0x${m[3]}`)) * BigInt(segmentSize) };
}

export const SEGMENT_NAME = /^[0-9A-F]{24}$/;
export const PARTIAL_NAME = /^[0-9A-F]{24}\.partial$/;
export const HISTORY_NAME = /^[0-9A-F]{8}\.history$/;

// ---------------------------------------------------------------- base backups

/** A running pg_basebackup. */
export interface BaseBackupRun {
  /** The tar; ends only after pg_basebackup exited 0 (destroyed otherwise, as a dump is). */
  stream: Readable;
  /** Resolves with the WAL range once pg_basebackup exited 0. */
  done: Promise<{ timeline: number; startLsn: string; endLsn: string }>;
}

/** Starts `pg_basebackup -D - -F tar -X none --checkpoint=fast` (the layout's base.tar). */
export function startBaseBackup(databaseUrl: string, opts: { signal?: AbortSignal } = {}): BaseBackupRun {
  const args = ['-D', '-', '-F', 'tar', '-X', 'none', '--checkpoint=fast', '--no-password', '--verbose', '--label=backplane'];
  const target = pgTarget(databaseUrl);
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  const tool = startTool('pg_basebackup', args, { env: toolEnv(target, { PGAPPNAME: 'backplane-basebackup' }), stdin: 'ignore', stdout: 'pipe' });
  const stdout = tool.child.stdout!;
  const manifest = new ManifestTail();
  stdout.on('data', (chunk: Buffer) => manifest.push(chunk));
  const onAbort = () => tool.kill();
  if (opts.signal?.aborted) tool.kill();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  stdout.pipe(stream, { end: false });
  let settled = false;
  stream.once('close', () => {
    if (!settled) tool.kill();
  });
  const stdoutEnded = new Promise<void>((resolve) => stdout.once('end', resolve));
  const done = (async () => {
    try {
      const exit = await tool.exited;
      const failure = opts.signal?.aborted ? new AbortedError({ cause: opts.signal.reason }) : tool.failure(exit);
      if (failure) throw failure;
      await stdoutEnded;
      // With -X none pg_basebackup prints no WAL range; the backup_manifest it puts at the end
      // of the tar names it: "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }].
      const text = manifest.text();
      const range = /"Timeline":\s*(\d+),\s*"Start-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)",\s*"End-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)"/.exec(text);
      if (!range) throw new SourceError('BASEBACKUP_OUTPUT', 'pg_basebackup wrote no backup_manifest with a WAL range into its tar');
      settled = true;
      stream.end();
      return { timeline: Number(range[1]), startLsn: range[2], endLsn: range[3] };
    } catch (err) {
      settled = true;
      stdout.destroy();
      stream.destroy(stream.listenerCount('error') > 0 ? (err as Error) : undefined);
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  })();
  done.catch(() => {});
  return { stream, done };
}

/**
 * Follows the tar headers going by and keeps the last 64 KiB of the `backup_manifest` entry,
 * where its WAL range is (after the file list, which may be long).
 */
class ManifestTail {
  private pending = Buffer.alloc(0);
  /** Bytes of the current entry's content (with padding) still to skip or keep. */
  private left = 0;
  private keeping = false;
  private tail = Buffer.alloc(0);
  private ended = false;

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (buf.length && !this.ended) {
      if (this.left > 0) {
        const n = Math.min(this.left, buf.length);
        if (this.keeping) this.tail = Buffer.concat([this.tail, buf.subarray(0, n)]).subarray(-65536);
        this.left -= n;
        buf = buf.subarray(n);
        continue;
      }
      if (buf.length < 512) {
        this.pending = Buffer.from(buf);
        return;
      }
      const header = buf.subarray(0, 512);
      buf = buf.subarray(512);
      if (header.every((b) => b === 0)) {
        this.ended = true;
        return;
      }
      const name = header.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
      const size = tarSize(header.subarray(124, 136));
      this.keeping = name === 'backup_manifest';
      if (this.keeping) this.tail = Buffer.alloc(0);
      this.left = Math.ceil(size / 512) * 512;
    }
  }

  text(): string {
    return this.tail.toString('utf8');
  }
}

function tarSize(field: Buffer): number {
  // Base-256 for entries of 8 GiB and more, octal otherwise.
  if (field[0] & 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i];
    return n;
  }
  return parseInt(field.toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
}

// ---------------------------------------------------------------- slots and the streamer

export interface SlotState {
  exists: boolean;
  active: boolean;
  restartLsn: string | null;
  /** WAL the server keeps for the slot (current position − restart_lsn). */
  retainedBytes: bigint;
  currentLsn: string;
  /** The server's clock when currentLsn was read. */
  serverTime: Date;
}

export async function slotState(databaseUrl: string, slotName: string): Promise<SlotState> {
  return withClient(databaseUrl, async (c) => {
    const r = await c.query<{ now: Date; cur: string; restart: string | null; active: boolean | null; retained: string | null }>(
      `SELECT clock_timestamp() AS now, pg_current_wal_lsn()::text AS cur, s.restart_lsn::text AS restart, s.active,
              (pg_current_wal_lsn() - s.restart_lsn)::text AS retained
       FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
      [slotName],
    );
    const row = r.rows[0];
    return {
      exists: row.active !== null,
      active: row.active === true,
      restartLsn: row.restart,
      retainedBytes: row.retained ? BigInt(row.retained.split('.')[0]) : 0n,
      currentLsn: row.cur,
      serverTime: row.now,
    };
  });
}

/**
 * A moment the archive can promise, read on the server: its clock, and a WAL position that every
 * commit acknowledged before that moment lies before, flushed (what a walsender sends). Not
 * pg_current_wal_lsn(), the *written* position: with synchronous_commit off a commit is
 * acknowledged once its record is in the WAL buffers and written by the WAL writer up to
 * 3 × wal_writer_delay later (measured with the default 200 ms: 150 ms median, 480 ms at most
 * under load), so a time taken beside it claimed commits the archive did not hold. WAL inserted
 * but not yet flushed is flushed here by a transaction of our own that writes one record (a
 * logical message, which physical recovery ignores) and commits with synchronous_commit = local:
 * its commit flushes everything before it. That commit, stamped after the moment, also gives a
 * recovery to any time up to the moment a transaction past its target to stop at. A server with
 * nothing unflushed gets no write, so an idle one stays idle.
 */
export async function walMark(databaseUrl: string): Promise<{ lsn: string; serverTime: Date }> {
  return withClient(databaseUrl, async (c) => {
    // Evaluated in this order: the clock before the positions.
    const r = (await c.query<{ now: Date; inserted: string; flushed: boolean }>('SELECT clock_timestamp() AS now, pg_current_wal_insert_lsn()::text AS inserted, pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn() AS flushed')).rows[0];
    if (r.flushed) return { lsn: r.inserted, serverTime: r.now };
    await c.query('BEGIN READ WRITE');
    try {
      await c.query('SET LOCAL synchronous_commit = local');
      await c.query("SELECT pg_logical_emit_message(true, 'backplane', 'WAL archive mark')");
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    return { lsn: (await c.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn')).rows[0].lsn, serverTime: r.now };
  });
}

/** Creates the physical slot, reserving WAL from now on, unless it exists. Returns whether it made it. */
export async function ensureSlot(databaseUrl: string, slotName: string): Promise<boolean> {
  return withClient(databaseUrl, async (c) => {
    const exists = await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
    if (exists.rowCount) return false;
    try {
      await c.query('SELECT pg_create_physical_replication_slot($1, true)', [slotName]);
      return true;
    } catch (err) {
      // Another worker made it a moment ago.
      if ((err as { code?: string }).code === '42710') return false;
      throw err;
    }
  });
}

/** Drops the slot, first ending the streamer that holds it. */
export async function dropSlot(databaseUrl: string, slotName: string): Promise<void> {
  await withClient(databaseUrl, async (c) => {
    await endSlotHolder(c, slotName);
    await c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
  });
}

/**
 * Ends whatever streams on the slot (its walsender, and so the pg_receivewal at the other end,
 * which runs with --no-loop) and waits until the slot is free. Returns the walsender's pid, or
 * null when nobody held it.
 */
export async function releaseSlot(databaseUrl: string, slotName: string): Promise<number | null> {
  return withClient(databaseUrl, (c) => endSlotHolder(c, slotName));
}

async function endSlotHolder(c: pg.Client, slotName: string): Promise<number | null> {
  const held = await c.query<{ pid: number }>('SELECT active_pid AS pid, pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [slotName]);
  if (!held.rowCount) return null;
  // Still active for a moment after its walsender was told to end.
  for (let i = 0; i < 100; i++) {
    const r = await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [slotName]);
    if (!r.rowCount) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  return held.rows[0].pid;
}

/**
 * Starts `pg_receivewal` into `dir` on the slot. `--synchronous` flushes and reports each write
 * at once, so the slot's restart_lsn tells how far the spool holds WAL; `--no-loop` lets us see a
 * lost connection and restart it ourselves.
 */
export function startReceiveWal(databaseUrl: string, opts: { dir: string; slot: string }): Tool {
  const target = pgTarget(databaseUrl);
  const args = ['-D', opts.dir, `--slot=${opts.slot}`, '--synchronous', '--no-loop', '--no-password', '--status-interval=1'];
  return startTool('pg_receivewal', args, { env: toolEnv(target, { PGAPPNAME: `backplane-receivewal` }), stdin: 'ignore', stdout: 'ignore' });
}
