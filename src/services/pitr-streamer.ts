import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Cron } from 'croner';
import { backup, type BackupSource } from '../engine/api.ts';
import type { Tool } from '../sources/child.ts';
import { parseHistory } from '../sources/pitr-layout.ts';
import { dropSlot, ensureSlot, formatLsn, HISTORY_NAME, identifySystem, parseLsn, PARTIAL_NAME, releaseSlot, SEGMENT_NAME, segmentStart, slotState, startReceiveWal, walMark } from '../sources/wal.ts';
import type { Deps } from './deps.ts';
import { enqueueBaseBackup } from './pitr-base-backups.ts';
import { applyPitrRetention } from './pitr-retention.ts';
import { alertCluster, archiveIntervalMs, clusterContext, PITR_ZSTD_LEVEL, type ClusterContext } from './pitr-cluster.ts';
import { openRepository } from './repositories.ts';

/**
 * WAL streaming: one streamer per cluster across every worker process, held by a lease on the
 * PitrCluster row (owner + expiry, renewed each tick; an expired lease is taken by whichever
 * worker ticks next). The holder runs `pg_receivewal` on the cluster's physical slot into a spool
 * folder under the Backplane home (`pitr/<sysid>/spool`), restarts it when it exits, and uploads
 * (the layout's `pitr-wal` snapshots): completed segments and history files as they appear, and
 * the current `.partial` at least every archive interval, each snapshot holding only files new or
 * changed since that repository's previous one. Before reading the spool it asks the server for
 * its time and a flushed WAL position past every commit acknowledged before it (`walMark`: not the
 * written position, which lags asynchronous commits), and waits until the slot (which
 * pg_receivewal --synchronous advances as it flushes) has passed it: so every commit up to that
 * time is in the upload, and that time becomes the cluster's `coveredUntil` — the recovery
 * window's end.
 *
 * The slot keeps WAL on the source while nobody streams; past `slotWarnBytes` an alert says so,
 * past `slotCapBytes` the slot is dropped (the user's disk matters more), a gap recorded from the
 * last covered moment, and a fresh slot, spool and base backup start the archive again.
 *
 * Named for crash recovery: the partial's copy for an upload lives in `pitr/<sysid>/stage/`,
 * emptied at every start.
 */

export interface PitrSupervisorOptions {
  home: string;
  /** This worker's name in leases (default: host, pid and a random part). */
  workerId?: string;
  /** How long a lease lasts without renewal (default 30 s). */
  leaseMs?: number;
  /** How often leases are renewed and streamers looked after (default 1 s). */
  tickMs?: number;
  /** Alert when the slot keeps more WAL than this (default 1 GiB). */
  slotWarnBytes?: bigint;
  /** Drop the slot past this (default 5 GiB). */
  slotCapBytes?: bigint;
}

export const DEFAULT_SLOT_CAP_BYTES = 5n << 30n;
export const DEFAULT_SLOT_WARN_BYTES = 1n << 30n;
/** After a failed automatic base backup, the next one waits this long. */
const BASE_BACKUP_RETRY_MS = 10 * 60_000;

export interface PitrSupervisor {
  readonly workerId: string;
  /** The clusters this worker streams, with pg_receivewal's pid when it runs. */
  streaming(): { clusterId: string; receiverPid: number | null }[];
  /** Uploads what the spool holds, with a mark taken after the call: every commit acknowledged before it is covered (tests use it; the tick uploads on its own). */
  archiveNow(clusterId: string): Promise<void>;
  stop(): Promise<void>;
}

export function startPitrSupervisor(deps: Deps, opts: PitrSupervisorOptions): PitrSupervisor {
  const workerId = opts.workerId ?? `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const leaseMs = opts.leaseMs ?? 30_000;
  const tickMs = opts.tickMs ?? 1_000;
  const streamers = new Map<string, ClusterStreamer>();
  let stopped = false;
  let ticking: Promise<void> = Promise.resolve();

  // Leases only: fast, so a long upload never lets this worker's lease expire under it. Each
  // streamer works in a loop of its own.
  const tick = async () => {
    const clusters = await deps.db.pitrCluster.findMany({ where: { environments: { some: { walEnabled: true } } }, select: { id: true } });
    const wanted = new Set(clusters.map((c) => c.id));
    for (const { id } of clusters) {
      if (stopped) return;
      const now = deps.clock.now();
      const took = await deps.db.pitrCluster.updateMany({
        where: { id, OR: [{ leaseOwner: workerId }, { leaseOwner: null }, { leaseExpiresAt: null }, { leaseExpiresAt: { lt: now } }] },
        data: { leaseOwner: workerId, leaseExpiresAt: new Date(now.getTime() + leaseMs) },
      });
      const held = took.count === 1;
      const s = streamers.get(id);
      if (held && !s && !stopped) {
        streamers.set(id, new ClusterStreamer(deps, id, { ...opts, workerId }, tickMs));
        deps.logger.info({ clusterId: id, workerId }, 'PITR: took the streamer lease');
      }
      if (!held && s) {
        streamers.delete(id);
        await s.stop();
        deps.logger.warn({ clusterId: id, workerId }, 'PITR: lost the streamer lease');
      }
    }
    for (const [id, s] of streamers) {
      if (wanted.has(id)) continue;
      streamers.delete(id);
      await s.stop();
      await deps.db.pitrCluster.updateMany({ where: { id, leaseOwner: workerId }, data: { leaseOwner: null, leaseExpiresAt: null } });
    }
  };
  const timer = setInterval(() => {
    ticking = ticking.then(() => (stopped ? undefined : tick().catch((err) => deps.logger.error({ err }, 'PITR: supervisor tick failed'))));
  }, tickMs);
  ticking = ticking.then(() => tick().catch((err) => deps.logger.error({ err }, 'PITR: supervisor tick failed')));

  return {
    workerId,
    streaming: () => [...streamers.entries()].map(([clusterId, s]) => ({ clusterId, receiverPid: s.receiverPid() })),
    archiveNow: async (clusterId) => {
      const s = streamers.get(clusterId);
      if (!s) throw new Error(`this worker does not stream cluster ${clusterId}`);
      await s.archive(true);
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await ticking;
      for (const [id, s] of streamers) {
        await s.stop();
        // Handing over at once: the next worker need not wait for the lease to expire.
        await deps.db.pitrCluster.updateMany({ where: { id, leaseOwner: workerId }, data: { leaseOwner: null, leaseExpiresAt: null } }).catch(() => undefined);
      }
      streamers.clear();
    },
  };
}

/** What one destination's repository already holds of the spool. */
interface Uploaded {
  names: Set<string>;
  /** Digest of the last `.partial` uploaded, by name. */
  partial: { name: string; digest: string } | null;
}

class ClusterStreamer {
  private receiver: Tool | null = null;
  private ctx: ClusterContext | null = null;
  private uploaded = new Map<string, Uploaded>();
  /**
   * Where the `.partial` copies uploaded of each segment (by its 24-character name) ended,
   * ascending: its later copies and the completed segment are cut there (forced cut points), so
   * the chunks before each are the blobs an earlier copy stored, and each upload adds only the
   * WAL written since the last one. Each upload records its copy's cut points (`partialCuts`):
   * a streamer meeting a segment for the first time (after a worker restart, or the lease moving)
   * takes them from the catalog (`cutsOf`), else it would cut the next copy by content alone and
   * store most of the segment's WAL again.
   */
  private cutPoints = new Map<string, number[]>();
  /** Segments whose cut points `cutsOf` has looked up in the catalog. */
  private cutsLookedUp = new Set<string>();
  private lastUploadAt = 0;
  private archiving: Promise<void> | null = null;
  private alerted = { lagging: false, retaining: false };
  private abort = new AbortController();
  private started = false;
  /** After a drop: the position the new slot must pass before the cap applies again. */
  private graceUntil: bigint | null = null;
  private lastRetentionAt = 0;
  /** The last pg_receivewal's error output once it exited ('' when it failed with none), until the tick reads it. */
  private receiverEnded: string | null = null;

  private loop: Promise<void>;

  constructor(
    private deps: Deps,
    private clusterId: string,
    private opts: PitrSupervisorOptions & { workerId: string },
    tickMs: number,
  ) {
    this.loop = (async () => {
      while (!this.abort.signal.aborted) {
        await this.tick().catch((err) => {
          if (!this.abort.signal.aborted) deps.logger.error({ err, clusterId }, 'PITR: streamer tick failed');
        });
        await new Promise((r) => setTimeout(r, tickMs));
      }
    })();
  }

  receiverPid(): number | null {
    return this.receiver && this.receiver.child.exitCode === null && this.receiver.child.signalCode === null ? (this.receiver.child.pid ?? null) : null;
  }

  private dirs() {
    const base = path.join(this.opts.home, 'pitr', this.ctx!.cluster.systemIdentifier);
    // The spool is the cluster's (a worker taking over on this host continues from it); the
    // stage, where an upload copies the partial, is this worker's.
    return { base, spool: path.join(base, 'spool'), stage: path.join(base, `stage-${this.opts.workerId.replace(/[^A-Za-z0-9_.-]/g, '_')}`) };
  }

  async tick(): Promise<void> {
    this.ctx = await clusterContext(this.deps, this.clusterId);
    const ctx = this.ctx;
    if (!ctx?.databaseUrl) return;
    const { spool, stage } = this.dirs();
    if (!this.started) {
      await fs.mkdir(spool, { recursive: true });
      // A copy left by a crash mid-upload is never needed again: ours, and any other worker's
      // stage that nobody has touched for an hour.
      await fs.rm(stage, { recursive: true, force: true });
      for (const n of await fs.readdir(this.dirs().base)) {
        if (!n.startsWith('stage-')) continue;
        const st = await fs.stat(path.join(this.dirs().base, n)).catch(() => null);
        if (st && Date.now() - st.mtimeMs > 3600_000) await fs.rm(path.join(this.dirs().base, n), { recursive: true, force: true });
      }
      await fs.mkdir(stage, { recursive: true });
      this.started = true;
    }
    if (await this.guardSlot(ctx)) return;
    if (!this.receiverPid()) {
      // Why the last one ended decides whether the spool can go on (in this loop, so a second
      // pg_receivewal never starts on a spool the first one's exit condemned).
      const ended = this.receiverEnded;
      this.receiverEnded = null;
      const broken = ended && archiveBreak(ended);
      if (broken) {
        await this.breakArchive(ctx, broken.reason, broken.detail);
        // The next tick starts over from the catalog as the break left it.
        return;
      }
      await this.startReceiver(ctx);
    }
    await this.maybeBaseBackup(ctx);
    const due = Date.now() - this.lastUploadAt >= archiveIntervalMs(ctx);
    const completed = (await fs.readdir(spool)).some((n) => (SEGMENT_NAME.test(n) || HISTORY_NAME.test(n)) && !this.everywhere(ctx, n));
    try {
      if (due || completed) await this.archive();
      // Retention once a day, by the holder (no upload of its own runs meanwhile).
      if (Date.now() - this.lastRetentionAt > 86_400_000) {
        this.lastRetentionAt = Date.now();
        const removed = await applyPitrRetention(this.deps, ctx.cluster.id, this.abort.signal);
        if (removed.baseBackups.length || removed.walUploads.length) this.deps.logger.info({ clusterId: ctx.cluster.id, baseBackups: removed.baseBackups.length, walSnapshots: removed.walUploads.length, walBefore: removed.walBefore }, 'PITR retention applied');
      }
    } finally {
      // Also, and above all, when uploads fail.
      await this.checkLag(ctx);
    }
  }

  private async startReceiver(ctx: ClusterContext): Promise<void> {
    await ensureSlot(ctx.databaseUrl!, ctx.cluster.slotName);
    // We hold the lease and run no pg_receivewal, so one still on the slot belongs to a worker
    // that lost the lease or died: a SIGKILLed worker's goes on (it runs in a process group of its
    // own) and would keep the slot, so ours could never start.
    const orphan = await releaseSlot(ctx.databaseUrl!, ctx.cluster.slotName);
    if (orphan) this.deps.logger.warn({ clusterId: this.clusterId, walsenderPid: orphan }, "PITR: ended another streamer's connection on the slot");
    const tool = startReceiveWal(ctx.databaseUrl!, { dir: this.dirs().spool, slot: ctx.cluster.slotName });
    this.receiver = tool;
    this.deps.logger.info({ clusterId: this.clusterId, pid: tool.child.pid }, 'PITR: pg_receivewal started');
    void tool.exited.then((exit) => {
      if (this.abort.signal.aborted) return;
      const failure = tool.failure(exit);
      this.deps.logger.warn({ clusterId: this.clusterId, code: exit.code, signal: exit.signal, err: failure?.message }, 'PITR: pg_receivewal exited; restarting it');
      if (this.receiver === tool) this.receiverEnded = failure?.message ?? '';
    });
  }

  private everywhere(ctx: ClusterContext, name: string): boolean {
    return ctx.destinationIds.every((d) => this.uploaded.get(d)?.names.has(name));
  }

  private async uploadedIn(destinationId: string): Promise<Uploaded> {
    let u = this.uploaded.get(destinationId);
    if (!u) {
      const rows = await this.deps.db.walUpload.findMany({ where: { clusterId: this.clusterId, destinationId }, select: { files: true } });
      u = { names: new Set(rows.flatMap((r) => r.files).filter((n) => !n.endsWith('.partial'))), partial: null };
      this.uploaded.set(destinationId, u);
    }
    return u;
  }

  /**
   * One upload round, serialized: what the spool holds that each repository lacks. `fresh`: an
   * upload whose mark is taken after this call, so it
   * covers every commit acknowledged before it; one already running took its mark earlier, so it
   * is waited for and another one runs.
   */
  archive(fresh = false): Promise<void> {
    const running = this.archiving;
    if (fresh && running) return running.catch(() => undefined).then(() => this.archive(true));
    this.archiving ??= this.archiveOnce().finally(() => (this.archiving = null));
    return this.archiving;
  }

  private async archiveOnce(): Promise<void> {
    const ctx = (this.ctx ??= await clusterContext(this.deps, this.clusterId));
    if (!ctx?.databaseUrl || !this.started) return;
    const { cluster } = ctx;
    const { spool, stage } = this.dirs();
    // The server's time and a position past every commit acknowledged before it (walMark); once
    // the slot (our flush position) passes it, the spool holds every commit made up to that time.
    const mark = await walMark(ctx.databaseUrl);
    const reached = await this.waitForFlush(ctx, parseLsn(mark.lsn));
    const names = (await fs.readdir(spool)).sort();
    // Segments gone from the spool (a break started it over) are never uploaded again.
    for (const segment of this.cutPoints.keys()) if (!names.some((n) => n.startsWith(segment))) this.cutPoints.delete(segment);
    for (const segment of this.cutsLookedUp) if (!names.some((n) => n.startsWith(segment))) this.cutsLookedUp.delete(segment);
    const complete = new Set(names.filter((n) => SEGMENT_NAME.test(n)));
    const partial = names.filter((n) => PARTIAL_NAME.test(n) && !complete.has(n.slice(0, 24))).pop() ?? null;
    let partialCopy: { name: string; file: string; digest: string; cuts: number[] } | null = null;
    if (partial) {
      const file = path.join(stage, partial);
      await fs.copyFile(path.join(spool, partial), file);
      const { digest, written } = await readCopy(file);
      const segment = partial.slice(0, 24);
      const earlier = ((await this.cutsOf(segment)) ?? []).filter((c) => c < written);
      const cuts = written > 0 ? [...earlier, written] : earlier;
      this.cutPoints.set(segment, cuts);
      partialCopy = { name: partial, file, digest, cuts };
    }
    const coversUntil = reached ? mark.serverTime : (cluster.coveredUntil ?? mark.serverTime);
    const tli = (partial ?? [...complete].pop()) ? segmentStart((partial ?? [...complete].pop())!, cluster.walSegmentSize).timeline : cluster.timeline;
    try {
      for (const destinationId of ctx.destinationIds) {
        const u = await this.uploadedIn(destinationId);
        const files = names.filter((n) => (SEGMENT_NAME.test(n) || HISTORY_NAME.test(n)) && !u.names.has(n));
        const sendPartial = partialCopy && (u.partial?.name !== partialCopy.name || u.partial.digest !== partialCopy.digest);
        const sources: Record<string, BackupSource> = {};
        for (const n of files) {
          const cuts = SEGMENT_NAME.test(n) ? await this.cutsOf(n) : undefined;
          sources[`/pitr/${cluster.systemIdentifier}/wal/${n}`] = cuts ? { path: path.join(spool, n), cuts } : path.join(spool, n);
        }
        if (sendPartial) sources[`/pitr/${cluster.systemIdentifier}/wal/${partialCopy!.name}`] = { path: partialCopy!.file, cuts: partialCopy!.cuts };
        if (!Object.keys(sources).length) continue;
        const opened = await openRepository(this.deps, destinationId, this.abort.signal);
        try {
          // Stamped with the time the WAL in it reaches (the layout's WAL snapshot time), not the
          // upload's: the recovery side takes a snapshot's time as how far it can replay.
          const r = await backup(opened.repo, sources, { tags: ['backplane', 'pitr-wal', `cluster:${cluster.systemIdentifier}`], time: coversUntil, signal: this.abort.signal, codecThreads: 1, compressionLevel: PITR_ZSTD_LEVEL });
          const all = [...files, ...(sendPartial ? [partialCopy!.name] : [])];
          await this.deps.db.walUpload.create({
            data: {
              clusterId: cluster.id,
              destinationId,
              repoSnapshotId: r.snapshotId,
              files: all,
              timeline: tli,
              startLsn: cluster.lastArchivedLsn,
              endLsn: reached ? formatLsn(reached) : null,
              bytes: BigInt(r.bytesProcessed),
              addedBytes: BigInt(r.bytesAdded),
              coversUntil,
              partialCuts: sendPartial ? partialCopy!.cuts : [],
            },
          });
          for (const n of files) u.names.add(n);
          if (sendPartial) u.partial = { name: partialCopy!.name, digest: partialCopy!.digest };
        } finally {
          await opened.close().catch(() => undefined);
        }
      }
    } finally {
      if (partialCopy) await fs.rm(partialCopy.file, { force: true });
    }
    this.lastUploadAt = Date.now();
    await this.recordTimelines(ctx, names.filter((n) => HISTORY_NAME.test(n)));
    await this.deps.db.pitrCluster.update({
      where: { id: cluster.id },
      data: {
        lastArchivedAt: this.deps.clock.now(),
        ...(reached ? { coveredUntil: mark.serverTime, lastArchivedLsn: formatLsn(reached) } : {}),
        // Never back: a spool started over after a break streams older timelines first.
        timeline: Math.max(cluster.timeline, tli),
      },
    });
    // Completed segments every repository holds leave the spool (the newest stays, so
    // pg_receivewal resumes after it rather than from the slot).
    const done = [...complete].filter((n) => this.everywhere(ctx, n));
    for (const n of done) this.cutPoints.delete(n);
    for (const n of done.slice(0, -1)) await fs.rm(path.join(spool, n), { force: true });
  }

  /**
   * Where `segment`'s earlier copies were cut: in memory, or, the first time this streamer meets
   * the segment, as the newest upload of a copy of it recorded them (whichever worker made it).
   */
  private async cutsOf(segment: string): Promise<number[] | undefined> {
    if (!this.cutPoints.has(segment) && !this.cutsLookedUp.has(segment)) {
      this.cutsLookedUp.add(segment);
      const last = await this.deps.db.walUpload.findFirst({ where: { clusterId: this.clusterId, files: { has: `${segment}.partial` } }, orderBy: { createdAt: 'desc' }, select: { partialCuts: true } });
      if (last?.partialCuts.length) this.cutPoints.set(segment, last.partialCuts);
    }
    return this.cutPoints.get(segment);
  }

  /**
   * A history file in the spool is a new timeline of the server (a standby promoted) that
   * pg_receivewal followed: archived, it lets recovery cross the switch, so the switch is listed
   * as a boundary. A recovery reads only the WAL snapshots up to its time, so a time the archive
   * covered before this upload still recovers along the old timeline; a time after it, along the
   * new one. When the archive took WAL from the old timeline past the switch point (commits the
   * promoted server never had), a time between the last one covered before this upload and now
   * would recover to the new timeline's state without them: that stretch becomes a gap.
   * `ctx.cluster` still holds the timeline and position of the upload before this one.
   */
  private async recordTimelines(ctx: ClusterContext, histories: string[]): Promise<void> {
    if (!histories.length) return;
    const { cluster } = ctx;
    const known = new Set((await this.deps.db.pitrTimelineSwitch.findMany({ where: { clusterId: cluster.id }, select: { timeline: true } })).map((r) => r.timeline));
    for (const name of histories.sort()) {
      const timeline = parseInt(name.slice(0, 8), 16);
      if (known.has(timeline)) continue;
      const last = parseHistory(await fs.readFile(path.join(this.dirs().spool, name), 'utf8')).at(-1);
      if (!last) continue;
      const now = this.deps.clock.now();
      // A timeline the archive was not on (one reached before a break started it over) is behind a gap already.
      const lost = cluster.timeline === last.parent && cluster.lastArchivedLsn !== null && parseLsn(cluster.lastArchivedLsn) > parseLsn(last.switchLsn);
      const from = lost ? cluster.coveredUntil : null;
      const detail = `timeline ${timeline} left timeline ${last.parent} at ${last.switchLsn}`;
      await this.deps.db.$transaction([
        this.deps.db.pitrTimelineSwitch.create({ data: { clusterId: cluster.id, timeline, parentTimeline: last.parent, switchLsn: last.switchLsn, seenAt: now } }),
        ...(from
          ? [
              this.deps.db.pitrGap.create({
                data: { clusterId: cluster.id, reason: 'TIMELINE_SWITCH', fromTime: from, toTime: now, detail: `${detail}, but the archive holds timeline ${last.parent} up to ${cluster.lastArchivedLsn}: what was committed there after the switch point is not on the new timeline` },
              }),
            ]
          : []),
      ]);
      this.deps.logger.warn({ clusterId: cluster.id, timeline, parent: last.parent, switchLsn: last.switchLsn, lost }, 'PITR: the server switched to a new timeline; the archive follows it');
      if (from) await alertCluster(this.deps, ctx, 'PITR_GAP', 'CRITICAL', `Point-in-time recovery has a gap from ${from.toISOString()} to ${now.toISOString()} (TIMELINE_SWITCH: ${detail}, after commits the archive holds from the old timeline)`);
    }
  }

  /** Waits (briefly) until the slot's flush position reaches `lsn`; returns it, or null. */
  private async waitForFlush(ctx: ClusterContext, lsn: bigint): Promise<bigint | null> {
    for (let i = 0; i < 100; i++) {
      const s = await slotState(ctx.databaseUrl!, ctx.cluster.slotName);
      if (s.restartLsn && parseLsn(s.restartLsn) >= lsn) return lsn;
      if (this.abort.signal.aborted || !this.receiverPid()) return null;
      await new Promise((r) => setTimeout(r, 50));
    }
    return null;
  }

  /** Alerts on a slot holding much WAL; drops it past the cap. Returns whether it dropped it. */
  private async guardSlot(ctx: ClusterContext): Promise<boolean> {
    const s = await slotState(ctx.databaseUrl!, ctx.cluster.slotName);
    if (!s.exists) return false;
    // A slot made after a drop reserves from the last checkpoint's redo point, which may already
    // be past the cap: it is judged once the new streamer has caught up with its creation.
    if (this.graceUntil !== null) {
      if (!s.restartLsn || parseLsn(s.restartLsn) < this.graceUntil) return false;
      this.graceUntil = null;
    }
    const cap = this.opts.slotCapBytes ?? DEFAULT_SLOT_CAP_BYTES;
    const warn = this.opts.slotWarnBytes ?? DEFAULT_SLOT_WARN_BYTES;
    if (s.retainedBytes > cap) {
      await this.breakArchive(ctx, 'SLOT_DROPPED', `the replication slot held ${s.retainedBytes} bytes of WAL, over the cap of ${cap}`);
      return true;
    }
    if (s.retainedBytes > warn && !this.alerted.retaining) {
      this.alerted.retaining = true;
      await alertCluster(this.deps, ctx, 'PITR_SLOT_RETAINING', 'WARNING', `The WAL streamer's replication slot keeps ${s.retainedBytes} bytes of WAL on the server (warning at ${warn}, dropped at ${cap})`);
    } else if (s.retainedBytes <= warn) this.alerted.retaining = false;
    return false;
  }

  /**
   * The archive cannot continue from where it is: record the gap (from the last covered moment
   * until the next base backup), start over with a fresh slot and spool, and take a base backup.
   */
  private async breakArchive(ctx: ClusterContext, reason: BreakReason, detail: string): Promise<void> {
    this.receiver?.kill();
    await this.receiver?.exited;
    this.receiver = null;
    if (reason === 'SLOT_DROPPED') await dropSlot(ctx.databaseUrl!, ctx.cluster.slotName);
    const from = ctx.cluster.coveredUntil ?? this.deps.clock.now();
    // The archive starts over on the server's timeline as it is now: timelines it reached before
    // this are behind the gap, not switches the new spool follows (see recordTimelines).
    const timeline = await identifySystem(ctx.databaseUrl!).then((s) => s.timeline, () => ctx.cluster.timeline);
    await this.deps.db.$transaction([
      this.deps.db.pitrGap.create({ data: { clusterId: ctx.cluster.id, reason, fromTime: from, detail } }),
      this.deps.db.pitrCluster.update({ where: { id: ctx.cluster.id }, data: { timeline: Math.max(timeline, ctx.cluster.timeline), ...(reason === 'SLOT_DROPPED' ? { slotDroppedAt: this.deps.clock.now() } : {}) } }),
    ]);
    const { spool } = this.dirs();
    for (const n of await fs.readdir(spool)) await fs.rm(path.join(spool, n), { force: true, recursive: true });
    this.graceUntil = parseLsn((await slotState(ctx.databaseUrl!, ctx.cluster.slotName)).currentLsn);
    if (reason === 'SLOT_DROPPED') await alertCluster(this.deps, ctx, 'PITR_SLOT_DROPPED', 'CRITICAL', `Point-in-time recovery: ${detail}; the slot was dropped to protect the server's disk`);
    await alertCluster(this.deps, ctx, 'PITR_GAP', 'CRITICAL', `Point-in-time recovery has a gap from ${from.toISOString()} until the next base backup (${reason}: ${detail})`);
    const owner = ctx.environments[0];
    if (owner && !(await this.deps.db.baseBackup.count({ where: { clusterId: ctx.cluster.id, status: 'CREATING' } }))) {
      await enqueueBaseBackup(this.deps, ctx.cluster.id, { organizationId: owner.organizationId, environmentId: owner.id });
    }
    // Read again before the next upload: the timeline and coverage changed.
    this.ctx = null;
  }

  /** The first base backup at once; later ones on the environments' cron (the earliest due). */
  private async maybeBaseBackup(ctx: ClusterContext): Promise<void> {
    const owner = ctx.environments[0];
    if (!owner || !this.receiverPid()) return;
    const creating = await this.deps.db.baseBackup.findMany({ where: { clusterId: ctx.cluster.id, status: 'CREATING' }, select: { id: true, operationId: true } });
    if (creating.length) {
      // One whose operation ended without it (its worker died, the sweeper failed the operation)
      // must not hold the next ones back.
      const ended = await this.deps.db.operation.findMany({ where: { id: { in: creating.map((b) => b.operationId!).filter(Boolean) }, status: { in: ['FAILED', 'CANCELLED'] } }, select: { id: true, error: true } });
      for (const op of ended) await this.deps.db.baseBackup.updateMany({ where: { operationId: op.id, status: 'CREATING' }, data: { status: 'FAILED', error: op.error, finishedAt: this.deps.clock.now() } });
      if (creating.length > ended.length) return;
    }
    const now = this.deps.clock.now();
    // A failed one (already alerted) is not retried at every tick: after a pause.
    const failed = await this.deps.db.baseBackup.findFirst({ where: { clusterId: ctx.cluster.id, status: 'FAILED', finishedAt: { gt: new Date(now.getTime() - BASE_BACKUP_RETRY_MS) } } });
    if (failed) return;
    const last = await this.deps.db.baseBackup.findFirst({ where: { clusterId: ctx.cluster.id, status: 'READY' }, orderBy: { startedAt: 'desc' } });
    const due = !last || ctx.environments.some((e) => {
      const next = new Cron(e.baseBackupCron, { timezone: 'UTC', mode: '5-part', paused: true }).nextRun(last.startedAt);
      return next !== null && next <= now;
    });
    if (due) await enqueueBaseBackup(this.deps, ctx.cluster.id, { organizationId: owner.organizationId, environmentId: owner.id });
  }

  private async checkLag(ctx: ClusterContext): Promise<void> {
    const covered = (await this.deps.db.pitrCluster.findUniqueOrThrow({ where: { id: ctx.cluster.id } })).coveredUntil;
    if (!covered) return;
    const lagging = this.deps.clock.now().getTime() - covered.getTime() > 2 * archiveIntervalMs(ctx);
    if (lagging && !this.alerted.lagging) {
      this.alerted.lagging = true;
      await alertCluster(this.deps, ctx, 'PITR_LAGGING', 'WARNING', `Point-in-time recovery: nothing archived since ${covered.toISOString()} (more than two archive intervals)`);
    } else if (!lagging) this.alerted.lagging = false;
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error('PITR streamer stopping'));
    await this.loop;
    await this.archiving?.catch(() => undefined);
    this.receiver?.kill();
    await this.receiver?.exited;
    this.receiver = null;
  }
}

type BreakReason = 'SLOT_DROPPED' | 'MISSING_WAL' | 'TIMELINE_SWITCH';

/** Whether pg_receivewal's exit (its error output) means the spool cannot be continued, and why. */
export function archiveBreak(error: string): { reason: BreakReason; detail: string } | null {
  // The server no longer has WAL the spool continues from.
  if (/has already been removed/.test(error)) return { reason: 'MISSING_WAL', detail: error };
  // The server is on a timeline that left ours before where the spool is (a standby promoted
  // that had not received all of it): the spool's WAL after the fork is on no timeline it serves.
  if (/is not in this server's history/.test(error)) return { reason: 'TIMELINE_SWITCH', detail: error };
  return null;
}

const ZEROS = Buffer.alloc(64 * 1024);

/**
 * A partial copy's digest, and how far WAL was written into it: the end of its last non-zero
 * byte (a segment is pre-allocated with zeros; WAL written as zeros at its very end is taken as
 * not written yet, which only places the cut a little early).
 */
async function readCopy(file: string): Promise<{ digest: string; written: number }> {
  const h = createHash('sha256');
  let offset = 0;
  let written = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: ZEROS.length })) {
    const b = chunk as Buffer;
    h.update(b);
    if (!b.equals(ZEROS.subarray(0, b.length))) {
      let i = b.length;
      while (b[i - 1] === 0) i--;
      written = offset + i;
    }
    offset += b.length;
  }
  return { digest: h.digest('hex'), written };
}

