import type { AlertSeverity, AlertType } from '../generated/prisma/enums.ts';
import { raiseAlert } from './alerts.ts';
import type { Deps } from './deps.ts';

/**
 * What the PITR services share about one cluster: the environments archiving it, the
 * destinations their archive goes to, and how to reach the server. Every environment on a
 * cluster shares its WAL, so every one of their destinations gets the whole archive.
 */

export interface ClusterContext {
  cluster: NonNullable<Awaited<ReturnType<Deps['db']['pitrCluster']['findUnique']>>>;
  /** Environments with walEnabled on this cluster, oldest first. */
  environments: { id: string; organizationId: string; name: string; databaseUrlEncrypted: string; walArchiveIntervalSeconds: number; walRetentionDays: number | null; baseBackupCron: string }[];
  /** Destination ids, in the environments' order, each once. */
  destinationIds: string[];
  /** The server, through the oldest enabled environment's credentials. */
  databaseUrl: string | null;
}

export async function clusterContext(deps: Deps, clusterId: string): Promise<ClusterContext | null> {
  const cluster = await deps.db.pitrCluster.findUnique({ where: { id: clusterId } });
  if (!cluster) return null;
  const environments = await deps.db.environment.findMany({
    where: { pitrClusterId: clusterId, walEnabled: true },
    orderBy: { createdAt: 'asc' },
    select: { id: true, organizationId: true, name: true, databaseUrlEncrypted: true, walArchiveIntervalSeconds: true, walRetentionDays: true, baseBackupCron: true },
  });
  const links = await deps.db.environmentDestination.findMany({ where: { environmentId: { in: environments.map((e) => e.id) } }, orderBy: { createdAt: 'asc' } });
  const destinationIds = [...new Set(environments.flatMap((e) => links.filter((l) => l.environmentId === e.id).map((l) => l.destinationId)))];
  return { cluster, environments, destinationIds, databaseUrl: environments[0] ? deps.secrets.open(environments[0].databaseUrlEncrypted) : null };
}

/** The archive interval of a cluster: the shortest any of its environments asks for. */
export function archiveIntervalMs(ctx: ClusterContext): number {
  return (ctx.environments.length ? Math.min(...ctx.environments.map((e) => e.walArchiveIntervalSeconds)) : 60) * 1000;
}

/** Raises the alert on every environment archiving the cluster: each one's recovery is affected. */
export async function alertCluster(deps: Deps, ctx: ClusterContext, type: AlertType, severity: AlertSeverity, message: string, operationId?: string): Promise<void> {
  for (const e of ctx.environments) {
    await raiseAlert(deps, { organizationId: e.organizationId, environmentId: e.id, operationId: operationId ?? null, type, severity, message: `${e.name}: ${message}` });
  }
}

/**
 * zstd level of PITR blobs (WAL and base backups): 6 stores pgbench's WAL 17% smaller than the
 * default 3 (pgBackRest's zst level 3 too), for about 0.1 s more CPU per 16 MiB segment (9 is no
 * smaller), and a pgbench cluster's files 9.5% smaller for 5 times the CPU (0.7 s per 100 MiB),
 * which a second base backup pays only for its new chunks.
 */
export const PITR_ZSTD_LEVEL = 6;
