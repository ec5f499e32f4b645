import type { Db } from '../db/client.ts';
import type { Viewer } from './viewer.ts';

/**
 * Audit events: sensitive actions (revealing a repository password…) with the key that did
 * them. Written by the service that performs the action, in the same call; read by admins of
 * the organization only.
 */

/** Actions recorded so far; `<type>.<verb>` where the type names the target's GraphQL type. */
export const AUDIT_ACTIONS = ['destination.reveal_repository_password'] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export function recordAuditEvent(db: Pick<Db, 'auditEvent'>, viewer: Viewer, action: AuditAction, targetId: string | null): Promise<unknown> {
  return db.auditEvent.create({ data: { organizationId: viewer.organizationId, apiKeyId: viewer.apiKeyId, action, targetId } });
}

/**
 * Prisma `where` for the audit events a viewer may read: the whole organization's, to an admin
 * key (a project-limited admin too, since the events are about the organization's shared
 * things); nothing otherwise.
 */
export function auditEventWhere<W extends object>(viewer: Viewer, where?: W) {
  const visible = viewer.scopes.has('admin') ? { organizationId: viewer.organizationId } : { id: { in: [] as string[] } };
  return { AND: [visible, where ?? {}] };
}
