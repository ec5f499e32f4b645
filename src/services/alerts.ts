import type { AlertSeverity, AlertType } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';

/** Raises an alert and tells the organization's alertCreated subscribers. */
export async function raiseAlert(
  deps: Deps,
  alert: { organizationId: string; environmentId?: string | null; operationId?: string | null; type: AlertType; severity: AlertSeverity; message: string },
): Promise<string> {
  const row = await deps.db.alert.create({ data: alert });
  await deps.events.publish('alertCreated', alert.organizationId, { organizationId: alert.organizationId, alertId: row.id });
  return row.id;
}
