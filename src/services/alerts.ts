import { ErrorCode, NotFoundError } from '../domain/errors.ts';
import type { AlertSeverity, AlertType, Prisma } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';
import { enqueueWebhookDeliveries } from './webhooks.ts';
import type { Viewer } from './viewer.ts';

/**
 * Alerts: things a person should know about (a failed snapshot or restore, a missed schedule, an
 * unreachable destination, a failed verification, retention deletions, an environment with no
 * recent success). Each belongs to an organization, usually to an environment, and links to the
 * operation it is about. Read and dismissed are separate: read clears the badge, dismissed hides it.
 */

/** Raises an alert, tells the organization's alertCreated subscribers and queues its webhook deliveries. */
export async function raiseAlert(
  deps: Deps,
  alert: { organizationId: string; environmentId?: string | null; operationId?: string | null; type: AlertType; severity: AlertSeverity; message: string },
): Promise<string> {
  const row = await deps.db.$transaction(async (tx) => {
    const created = await tx.alert.create({ data: { ...alert, createdAt: deps.clock.now() } });
    await enqueueWebhookDeliveries(tx, created.organizationId, created.id);
    return created;
  });
  await deps.events.publish('alertCreated', alert.organizationId, { organizationId: alert.organizationId, alertId: row.id });
  return row.id;
}

/**
 * Prisma `where` for alerts the viewer may see: its organization's, and for a key limited to some
 * projects only those of their environments (organization-wide alerts stay visible).
 */
export function alertWhere(viewer: Viewer, where: Prisma.AlertWhereInput = {}): Prisma.AlertWhereInput {
  const visible: Prisma.AlertWhereInput = {
    organizationId: viewer.organizationId,
    ...(viewer.projectIds ? { OR: [{ environmentId: null }, { environment: { projectId: { in: [...viewer.projectIds] } } }] } : {}),
  };
  return { AND: [visible, where] };
}

export async function getAlert(deps: Deps, viewer: Viewer, id: string) {
  const alert = await deps.db.alert.findFirst({ where: alertWhere(viewer, { id }) });
  if (!alert) throw new NotFoundError(ErrorCode.ALERT_NOT_FOUND, 'Alert not found');
  return alert;
}

export async function alertCounts(deps: Deps, viewer: Viewer): Promise<{ unread: number; undismissed: number }> {
  const [unread, undismissed] = await Promise.all([
    deps.db.alert.count({ where: alertWhere(viewer, { readAt: null, dismissedAt: null }) }),
    deps.db.alert.count({ where: alertWhere(viewer, { dismissedAt: null }) }),
  ]);
  return { unread, undismissed };
}

export async function markAlertRead(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  await getAlert(deps, viewer, id);
  await deps.db.alert.updateMany({ where: { id, readAt: null }, data: { readAt: deps.clock.now() } });
  return id;
}

/** Dismissing also reads it. */
export async function dismissAlert(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  const alert = await getAlert(deps, viewer, id);
  const now = deps.clock.now();
  await deps.db.alert.update({ where: { id }, data: { dismissedAt: alert.dismissedAt ?? now, readAt: alert.readAt ?? now } });
  return id;
}

/** Marks every unread alert the viewer can see as read; returns how many changed. */
export async function markAllAlertsRead(deps: Deps, viewer: Viewer): Promise<number> {
  const r = await deps.db.alert.updateMany({ where: alertWhere(viewer, { readAt: null }), data: { readAt: deps.clock.now() } });
  return r.count;
}
