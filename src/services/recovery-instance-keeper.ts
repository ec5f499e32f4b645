import os from 'node:os';
import type { RecoveryInstanceStatus } from '../generated/prisma/enums.ts';
import { publishInTransaction } from '../events/bus.ts';
import { discardWorkDir, instanceWorkDir, listInstanceWorkDirs } from '../sources/pitr-instance.ts';
import type { Deps } from './deps.ts';

/**
 * The keeper of recovery instances (openRecoveryInstance): one in each worker process, started
 * beside the WAL streamers' supervisor. An instance is held by the worker process that recovered
 * it, through a lease on its row (`leaseOwner`, `leaseExpiresAt`), renewed every tick as the
 * streamer's is. Each tick the keeper
 * - renews the leases of its own instances (STARTING while their job recovers them, READY after);
 * - stops its READY instances past `expiresAt` (EXPIRED) or asked to close (STOPPED): the
 *   postmaster stopped immediately and the folder removed, then the row updated;
 * and, every fifth tick,
 * - marks LOST every live instance whose lease lapsed, whoever held it (its worker died or hangs);
 * - sweeps the home: an instance folder (`pitr-instance-<id>`) is removed unless its row is
 *   STARTING or READY under a lease that has not lapsed. So a live instance is never removed,
 *   and one whose row is gone, ended, or whose owner died is, on the host that holds it.
 * A stopping worker stops its instances (STOPPED) after its jobs ended.
 */

export interface RecoveryInstanceKeeperOptions {
  home: string;
  /** The address instances listen on (PITR_INSTANCE_LISTEN). */
  listen: string;
  /** At most this many starting or running instances in this process (PITR_INSTANCE_MAX). */
  max: number;
  /** This process's name in leases (default: host, pid and a random part). */
  workerId?: string;
  /** How long a lease lasts without renewal (default 30 s). */
  leaseMs?: number;
  /** How often the keeper ticks (default 1 s). */
  tickMs?: number;
}

export interface RecoveryInstanceKeeper {
  readonly workerId: string;
  readonly home: string;
  readonly listen: string;
  readonly max: number;
  readonly leaseMs: number;
  /** One whole tick now, lapsed leases and folders included (tests use it; the timer ticks on its own). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

/** The statuses of an instance that may have a process and a folder. */
export const LIVE_INSTANCE: RecoveryInstanceStatus[] = ['STARTING', 'READY'];

/** The keepers running with these deps (a worker's; tests start several workers on one runtime). */
const keepers = new WeakMap<Deps, Set<RecoveryInstanceKeeper>>();

/** The keeper running in this process with these deps (the newest, if several), if any: a job's instance is held by it. */
export function keeperOf(deps: Deps): RecoveryInstanceKeeper | undefined {
  return [...(keepers.get(deps) ?? [])].at(-1);
}

/**
 * Ends instance `id` if it is still in one of `from`: its process stopped and its folder removed
 * under `home` first, so whoever sees the new status finds neither; then the row, with an event.
 * Returns whether it was this call that ended it.
 */
export async function endInstance(
  deps: Deps,
  home: string,
  id: string,
  status: 'STOPPED' | 'EXPIRED' | 'FAILED' | 'LOST',
  error: string | null,
  from: RecoveryInstanceStatus[] = LIVE_INSTANCE,
): Promise<boolean> {
  if (status !== 'LOST') await discardWorkDir(instanceWorkDir(home, id));
  return deps.db.$transaction(async (tx) => {
    const row = await tx.recoveryInstance.findUnique({ where: { id }, select: { environmentId: true } });
    if (!row) return false;
    const ended = await tx.recoveryInstance.updateMany({ where: { id, status: { in: from } }, data: { status, error, stoppedAt: deps.clock.now(), leaseOwner: null, leaseExpiresAt: null } });
    if (ended.count === 1) await publishInTransaction(tx, 'environmentActivity', row.environmentId, { kind: 'RECOVERY_INSTANCE', environmentId: row.environmentId, subjectId: id });
    return ended.count === 1;
  });
}

const SWEEP_EVERY = 5;

export function startRecoveryInstanceKeeper(deps: Deps, opts: RecoveryInstanceKeeperOptions): RecoveryInstanceKeeper {
  const workerId = opts.workerId ?? `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const leaseMs = opts.leaseMs ?? 30_000;
  const tickMs = opts.tickMs ?? 1_000;
  let stopped = false;
  let ticking: Promise<void> = Promise.resolve();

  // The lapsed leases and the folders are looked at every SWEEP_EVERY ticks: a worker with no
  // instance then asks the catalog one question per tick, not three.
  let ticks = 0;
  const tick = async (full: boolean) => {
    const now = deps.clock.now();
    const renewed = await deps.db.recoveryInstance.updateMany({ where: { leaseOwner: workerId, status: { in: LIVE_INSTANCE } }, data: { leaseExpiresAt: new Date(now.getTime() + leaseMs) } });
    if (renewed.count > 0) {
      const mine = await deps.db.recoveryInstance.findMany({ where: { leaseOwner: workerId, status: 'READY' } });
      for (const i of mine) {
        if (i.closeRequestedAt) await endInstance(deps, opts.home, i.id, 'STOPPED', null, ['READY']);
        else if (i.expiresAt && i.expiresAt.getTime() <= now.getTime()) await endInstance(deps, opts.home, i.id, 'EXPIRED', null, ['READY']);
      }
    }
    if (!full && ticks++ % SWEEP_EVERY !== 0) return;
    const lapsed = await deps.db.recoveryInstance.findMany({ where: { status: { in: LIVE_INSTANCE }, leaseExpiresAt: { lt: now } }, select: { id: true, leaseOwner: true } });
    for (const i of lapsed) {
      deps.logger.warn({ recoveryInstanceId: i.id, leaseOwner: i.leaseOwner, workerId }, 'recovery instance lost: its worker stopped renewing its lease');
      await endInstance(deps, opts.home, i.id, 'LOST', `the worker holding it (${i.leaseOwner}) stopped renewing its lease`);
    }
    const folders = await listInstanceWorkDirs(opts.home);
    if (folders.length) {
      const live = await deps.db.recoveryInstance.findMany({
        where: { id: { in: folders }, status: { in: LIVE_INSTANCE }, leaseExpiresAt: { gte: deps.clock.now() } },
        select: { id: true },
      });
      const keep = new Set(live.map((i) => i.id));
      for (const id of folders) {
        if (keep.has(id)) continue;
        if (await discardWorkDir(instanceWorkDir(opts.home, id))) deps.logger.warn({ recoveryInstanceId: id, workerId }, 'removed the folder of a recovery instance that is no longer live');
      }
    }
  };
  const timer = setInterval(() => {
    ticking = ticking.then(() => (stopped ? undefined : tick(false).catch((err: unknown) => deps.logger.error({ err }, 'recovery instance keeper: tick failed'))));
  }, tickMs);
  timer.unref();

  const keeper: RecoveryInstanceKeeper = {
    workerId,
    home: opts.home,
    listen: opts.listen,
    max: opts.max,
    leaseMs,
    tick: () => (ticking = ticking.then(() => tick(true))),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await ticking.catch(() => undefined);
      const mine = await deps.db.recoveryInstance.findMany({ where: { leaseOwner: workerId, status: { in: LIVE_INSTANCE } }, select: { id: true } });
      for (const i of mine) await endInstance(deps, opts.home, i.id, 'STOPPED', 'its worker stopped').catch((err: unknown) => deps.logger.error({ err, recoveryInstanceId: i.id }, 'could not stop a recovery instance'));
      keepers.get(deps)?.delete(keeper);
    },
  };
  if (!keepers.has(deps)) keepers.set(deps, new Set());
  keepers.get(deps)!.add(keeper);
  return keeper;
}
