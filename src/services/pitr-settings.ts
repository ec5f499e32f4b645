import { ConflictError, ErrorCode } from '../domain/errors.ts';
import type { Environment } from '../generated/prisma/client.ts';
import { inspectWalSource, localPgMajor, walSourceProblems, type WalSourceFacts } from '../sources/wal.ts';
import type { Deps } from './deps.ts';
import type { SqlTx } from './jobs.ts';

/**
 * Turning point-in-time recovery on and off for an environment. The settings travel on the
 * schedule input (where the platforms Backplane replaces put them) and live on the environment;
 * the environment is tied to a PitrCluster row, one per PostgreSQL cluster (system identifier),
 * which every environment on that server shares: one slot, one streamer, one WAL archive.
 */

export interface PitrFields {
  walEnabled?: boolean;
  walRetentionDays?: number | null;
  walArchiveIntervalSeconds?: number;
  baseBackupCron?: string;
}

/**
 * Reads the environment's server and refuses, changing nothing, when its WAL cannot be
 * streamed: the error lists every setting to change at once, not one per attempt.
 */
export async function checkPitrSource(deps: Deps, env: Pick<Environment, 'databaseUrlEncrypted'>): Promise<WalSourceFacts> {
  let facts: WalSourceFacts;
  try {
    facts = await inspectWalSource(deps.secrets.open(env.databaseUrlEncrypted));
  } catch (err) {
    throw new ConflictError(ErrorCode.DATABASE_UNREACHABLE, `The environment's database cannot be reached to check its WAL settings: ${(err as Error).message}`);
  }
  const problems = walSourceProblems(facts, await localPgMajor());
  if (problems.length) {
    throw new ConflictError(ErrorCode.PITR_SOURCE_UNSUITABLE, `Point-in-time recovery cannot be enabled for this server: ${problems.join('; ')}`);
  }
  return facts;
}

/** The slot's name: stable for the cluster's catalog row, and ours by its prefix. */
export const slotNameFor = (clusterId: string) => `backplane_${clusterId.replace(/-/g, '')}`;

type Tx = SqlTx & Pick<Deps['db'], 'environment' | 'pitrCluster'>;

/** Writes the fields; `facts` (from checkPitrSource) ties the environment to its cluster's row. */
export async function applyPitrSettings(tx: Tx, environmentId: string, fields: PitrFields, facts: WalSourceFacts | null): Promise<void> {
  let pitrClusterId: string | undefined;
  if (facts) {
    const cluster = await tx.pitrCluster.upsert({
      where: { systemIdentifier: facts.systemIdentifier },
      create: { systemIdentifier: facts.systemIdentifier, slotName: 'pending', timeline: facts.timeline, walSegmentSize: facts.walSegmentSize },
      update: {},
    });
    if (cluster.slotName === 'pending') await tx.pitrCluster.update({ where: { id: cluster.id }, data: { slotName: slotNameFor(cluster.id) } });
    pitrClusterId = cluster.id;
  }
  const data = {
    ...(fields.walEnabled !== undefined ? { walEnabled: fields.walEnabled } : {}),
    ...(fields.walRetentionDays !== undefined ? { walRetentionDays: fields.walRetentionDays } : {}),
    ...(fields.walArchiveIntervalSeconds !== undefined ? { walArchiveIntervalSeconds: fields.walArchiveIntervalSeconds } : {}),
    ...(fields.baseBackupCron !== undefined ? { baseBackupCron: fields.baseBackupCron } : {}),
    ...(pitrClusterId ? { pitrClusterId } : {}),
  };
  if (Object.keys(data).length) await tx.environment.update({ where: { id: environmentId }, data });
}
