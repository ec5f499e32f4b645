import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import type { SqlTx } from './jobs.ts';
import type { Deps } from './deps.ts';

/** How long a key is remembered. */
const TTL_MS = 24 * 60 * 60 * 1000;

export const idempotencyKey = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters');

/** A stable hash of an input: same fields, same values → same hash, whatever the key order. */
export function inputHash(input: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' && !(v instanceof Date)
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, canonical(x)]))
      : v instanceof Date ? v.toISOString() : v;
  return createHash('sha256').update(JSON.stringify(canonical(input))).digest('hex');
}

/**
 * The operation an earlier request with this key started, when the input is the same; a
 * ConflictError when the same key came with another input; null when the key is new.
 */
export async function replayed(deps: Deps, organizationId: string, mutation: string, key: string, hash: string): Promise<string | null> {
  const row = await deps.db.idempotencyKey.findUnique({ where: { organizationId_mutation_key: { organizationId, mutation, key } } });
  if (!row || row.expiresAt <= deps.clock.now()) return null;
  if (row.requestHash !== hash) throw new ConflictError(ErrorCode.IDEMPOTENCY_KEY_REUSED, 'This idempotency key was already used with a different input');
  return row.operationId;
}

/** Records the key in the same transaction that starts the operation. */
export async function remember(
  tx: SqlTx & { idempotencyKey: Deps['db']['idempotencyKey'] },
  deps: Deps,
  rec: { organizationId: string; mutation: string; key: string; hash: string; operationId: string },
): Promise<void> {
  const now = deps.clock.now();
  await tx.idempotencyKey.deleteMany({ where: { organizationId: rec.organizationId, mutation: rec.mutation, key: rec.key, expiresAt: { lte: now } } });
  await tx.idempotencyKey.create({
    data: { organizationId: rec.organizationId, mutation: rec.mutation, key: rec.key, requestHash: rec.hash, operationId: rec.operationId, expiresAt: new Date(now.getTime() + TTL_MS) },
  });
}
