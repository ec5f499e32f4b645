import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/client.ts';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { expandScopes, SCOPES, scopeFromDb, scopeToDb, type Scope } from '../domain/scopes.ts';
import { name, parseInput } from '../domain/validation.ts';
import { ALL, LISTENER_APPLICATION, publishInTransaction } from '../events/bus.ts';
import type { Deps, KeyCache } from './deps.ts';
import { canSeeProject, type Viewer } from './viewer.ts';

/**
 * API keys look like `bp_<prefix>_<secret>`. The prefix finds the row; only a SHA-256 of the
 * secret is stored (the secret has 256 bits of entropy, so a slow hash adds nothing).
 */
const KEY_RE = /^bp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');

/** The caller sent a credential that is not a valid, live key. */
export class AuthenticationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthenticationError';
  }
}

/** Reads `Bearer <key>` (or the bare key); null when nothing was sent. */
export function bearerToken(header: string | null | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return (m ? m[1] : header).trim() || null;
}

/** The viewer for a key; throws AuthenticationError for a malformed, unknown, revoked or expired key. */
export async function authenticate(db: Db, token: string, now: Date): Promise<Viewer> {
  return (await lookUp(db, token, now)).viewer;
}

/**
 * Remembers authenticated keys for `ttlMs`, so a request does not cost two catalog round trips
 * before its own work (under load, those waits are much of a query's time). A key revoked
 * through any process is forgotten at once (forgetRevokedKeys); a key deleted with its
 * organization, or revoked while this process's event connection was down, still works here
 * for up to `ttlMs`. An expiry is checked on every request.
 * Failed attempts are never remembered.
 */
export class ViewerCache implements KeyCache {
  private readonly entries = new Map<string, { viewer: Viewer; keyExpiresAt: number | null; since: number }>();
  /** Keys forgotten lately, until when: a lookup that was under way as one was revoked is not kept. */
  private readonly forgotten = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
  ) {}

  async authenticate(db: Db, token: string, now: Date): Promise<Viewer> {
    if (this.ttlMs <= 0) return authenticate(db, token, now);
    // Keyed by a hash, so the map never holds a usable secret.
    const id = hashSecret(token);
    const t = now.getTime();
    const hit = this.entries.get(id);
    if (hit && t >= hit.since && t - hit.since < this.ttlMs && (hit.keyExpiresAt === null || t < hit.keyExpiresAt)) return hit.viewer;
    this.entries.delete(id);
    const { viewer, expiresAt } = await lookUp(db, token, now);
    if ((this.forgotten.get(viewer.apiKeyId) ?? -Infinity) > t) return viewer;
    // Oldest first out: a Map iterates in insertion order.
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { viewer, keyExpiresAt: expiresAt?.getTime() ?? null, since: t });
    return viewer;
  }

  /** Drops every remembered use of a key (after it was revoked), and keeps none for `ttlMs`. */
  forget(apiKeyId: string, now: Date): void {
    for (const [id, e] of this.entries) if (e.viewer.apiKeyId === apiKeyId) this.entries.delete(id);
    const t = now.getTime();
    for (const [id, until] of this.forgotten) if (until <= t) this.forgotten.delete(id);
    this.forgotten.set(apiKeyId, t + this.ttlMs);
  }
}

async function lookUp(db: Db, token: string, now: Date): Promise<{ viewer: Viewer; expiresAt: Date | null }> {
  const m = KEY_RE.exec(token);
  if (!m) throw new AuthenticationError('Malformed API key');
  const key = await db.apiKey.findUnique({ where: { prefix: m[1] }, include: { projects: { select: { projectId: true } } } });
  const expected = Buffer.from(key?.secretHash ?? '0'.repeat(64), 'hex');
  const actual = Buffer.from(hashSecret(m[2]), 'hex');
  if (!key || !timingSafeEqual(expected, actual)) throw new AuthenticationError('Unknown API key');
  if (key.revokedAt) throw new AuthenticationError('API key has been revoked');
  if (key.expiresAt && key.expiresAt <= now) throw new AuthenticationError('API key has expired');
  if (!key.lastUsedAt || now.getTime() - key.lastUsedAt.getTime() > 60_000) {
    // Best effort and throttled: a busy key must not turn every read into a write.
    void db.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: now } }).catch(() => undefined);
  }
  const viewer: Viewer = {
    organizationId: key.organizationId,
    apiKeyId: key.id,
    scopes: expandScopes(key.scopes.map((s) => scopeFromDb[s])),
    projectIds: key.projects.length ? Object.freeze(key.projects.map((p) => p.projectId)) : null,
  };
  return { viewer: Object.freeze(viewer), expiresAt: key.expiresAt };
}

export interface IssuedKey {
  id: string;
  /** The whole key; shown once. */
  secret: string;
}

/** Creates a key without authorization checks: for the bootstrap and for createApiKey after its checks. */
export async function issueApiKey(
  db: Db,
  input: { organizationId: string; name: string; scopes: Scope[]; projectIds?: string[]; expiresAt?: Date | null },
): Promise<IssuedKey> {
  const prefix = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const row = await db.apiKey.create({
    data: {
      organizationId: input.organizationId,
      name: input.name,
      prefix,
      secretHash: hashSecret(secret),
      scopes: input.scopes.map((s) => scopeToDb[s]),
      expiresAt: input.expiresAt ?? null,
      projects: input.projectIds?.length ? { create: input.projectIds.map((projectId) => ({ projectId })) } : undefined,
    },
  });
  return { id: row.id, secret: `bp_${prefix}_${secret}` };
}

/** What a new key needs, whoever creates it (the API, the CLI): the same name and scope rules. */
export const createApiKeyInput = z.object({
  name,
  scopes: z.array(z.enum(SCOPES)).min(1, 'must list at least one scope').max(3),
  projectIds: z.array(z.string()).max(100).optional(),
  expiresAt: z.date().nullish(),
});

/**
 * Creates a key for the viewer's organization. A key never grants more than its creator holds:
 * no wider scope, and a creator limited to some projects may only create keys limited to those.
 */
export async function createApiKey(deps: Deps, viewer: Viewer, raw: z.input<typeof createApiKeyInput>): Promise<IssuedKey> {
  const input = parseInput(createApiKeyInput, raw);
  input.scopes.forEach((s, i) => {
    if (!viewer.scopes.has(s)) throw ValidationError.field(['input', 'scopes', String(i)], `you cannot grant "${s}", which your own key lacks`);
  });
  if (input.expiresAt && input.expiresAt <= deps.clock.now()) throw ValidationError.field(['input', 'expiresAt'], 'must be in the future');
  const projectIds = [...new Set(input.projectIds ?? [])];
  if (viewer.projectIds && projectIds.length === 0) {
    throw ValidationError.field(['input', 'projectIds'], 'your key is limited to some projects; list the projects the new key may use');
  }
  if (projectIds.length) {
    const found = await deps.db.project.count({ where: { id: { in: projectIds }, organizationId: viewer.organizationId } });
    if (found !== projectIds.length || !projectIds.every((id) => canSeeProject(viewer, id))) throw NotFoundError.project();
  }
  return issueApiKey(deps.db, { organizationId: viewer.organizationId, name: input.name, scopes: input.scopes, projectIds, expiresAt: input.expiresAt });
}

/** Revokes a key of the viewer's organization; revoking twice is a conflict, not a silent success. */
export async function revokeApiKey(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  const key = await deps.db.apiKey.findFirst({ where: { id, organizationId: viewer.organizationId }, include: { projects: true } });
  // A project-limited key may only manage keys limited to its own projects.
  const visible = key && (viewer.projectIds === null || (key.projects.length > 0 && key.projects.every((p) => canSeeProject(viewer, p.projectId))));
  if (!key || !visible) throw NotFoundError.apiKey();
  if (key.revokedAt) throw new ConflictError(ErrorCode.API_KEY_REVOKED, 'API key is already revoked');
  const now = deps.clock.now();
  // Every process hears of it on commit, forgets the key and says so (forgetRevokedKeys). The
  // answer waits until every process listening then has said so, so the caller's next request, to
  // any API process, is refused (answering at commit let another process accept it a moment
  // longer). Bounded, so a process that hangs or a bus that is down delays no one for long; the
  // caches' time to live covers those cases.
  const acks = deps.events.subscribe('apiKeyForgotten', ALL, AbortSignal.timeout(REVOCATION_WAIT_MS));
  try {
    await deps.db.$transaction(async (tx) => {
      await tx.apiKey.update({ where: { id }, data: { revokedAt: now } });
      await publishInTransaction(tx, 'apiKeyRevoked', ALL, { apiKeyId: id });
    });
    deps.viewerCache?.forget(id, now);
    const rows = await deps.db.$queryRawUnsafe<{ pid: number }[]>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
      LISTENER_APPLICATION,
    );
    const waiting = new Set(rows.map((r) => r.pid));
    for await (const a of waiting.size ? acks : []) {
      if (a.apiKeyId === id) waiting.delete(a.listener);
      if (waiting.size === 0) break;
    }
  } finally {
    await acks.return?.();
  }
  return id;
}

/** Longest a revocation's answer waits for every process to forget the key. */
const REVOCATION_WAIT_MS = 3_000;

/**
 * Keeps the process's ViewerCache in step with revocations made by any process, for as long as
 * the event bus runs. A revocation sent while this process's listening connection was down
 * still takes effect within the cache's time to live.
 */
export function forgetRevokedKeys(deps: Pick<Deps, 'events' | 'viewerCache' | 'clock' | 'logger'>): void {
  const cache = deps.viewerCache;
  void (async () => {
    for await (const e of deps.events.subscribe('apiKeyRevoked', ALL)) {
      cache?.forget(e.apiKeyId, deps.clock.now());
      // The revoking process waits for this from every listener (revokeApiKey).
      const listener = deps.events.listenerPid();
      if (listener !== null) await deps.events.publish('apiKeyForgotten', ALL, { apiKeyId: e.apiKeyId, listener }).catch((err: unknown) => deps.logger.warn({ err }, 'could not confirm a revocation'));
    }
  })().catch((err: unknown) => deps.logger.error({ err }, 'stopped following API key revocations'));
}

/** Prisma `where` for the keys a viewer may list. */
export function apiKeyWhere<W extends object>(viewer: Viewer, where?: W) {
  const visible = {
    organizationId: viewer.organizationId,
    ...(viewer.projectIds ? { projects: { some: {}, every: { projectId: { in: [...viewer.projectIds] } } } } : {}),
  };
  return { AND: [visible, where ?? {}] };
}
