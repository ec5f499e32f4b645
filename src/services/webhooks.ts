import { createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ErrorCode, NotFoundError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import type { Deps } from './deps.ts';
import { enqueueJob, type SqlTx } from './jobs.ts';
import type { Viewer } from './viewer.ts';

/**
 * Webhooks: an organization may register URLs that receive every alert as a signed JSON POST.
 * Each attempt is a WebhookDelivery row (attempt 1, 2, …) so a person can see what happened; a
 * failed attempt schedules the next one with exponential backoff, up to MAX_ATTEMPTS.
 *
 * Signature: `X-Backplane-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the
 * webhook's secret, and `X-Backplane-Timestamp: <unix seconds>`; receivers recompute it and
 * refuse old timestamps.
 */

export const MAX_ATTEMPTS = 5;
/** Delay before attempt n+1: BASE_BACKOFF_MS · 2^(n-1). */
export const BASE_BACKOFF_MS = 30_000;
const TIMEOUT_MS = 10_000;

const createWebhookInput = z.object({
  url: z
    .string()
    .trim()
    .max(2000, 'must be at most 2000 characters')
    .refine((v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'https:' || u.protocol === 'http:';
      } catch {
        return false;
      }
    }, 'must be an http:// or https:// URL'),
  secret: z.string().min(16, 'must be at least 16 characters').max(200, 'must be at most 200 characters').nullish(),
});

/** Registers a webhook; the secret (given or generated) is returned once. */
export async function createWebhook(deps: Deps, viewer: Viewer, raw: z.input<typeof createWebhookInput>): Promise<{ webhookId: string; secret: string }> {
  const input = parseInput(createWebhookInput, raw);
  const secret = input.secret ?? `whsec_${randomBytes(24).toString('base64url')}`;
  const row = await deps.db.webhook.create({ data: { organizationId: viewer.organizationId, url: input.url, secretEncrypted: deps.secrets.seal(secret) } });
  return { webhookId: row.id, secret };
}

export async function getWebhook(deps: Deps, viewer: Viewer, id: string) {
  const w = await deps.db.webhook.findFirst({ where: { id, organizationId: viewer.organizationId } });
  if (!w) throw new NotFoundError(ErrorCode.WEBHOOK_NOT_FOUND, 'Webhook not found');
  return w;
}

export async function deleteWebhook(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  await getWebhook(deps, viewer, id);
  await deps.db.webhook.delete({ where: { id } });
  return id;
}

type Tx = SqlTx & { webhook: Deps['db']['webhook']; webhookDelivery: Deps['db']['webhookDelivery'] };

/** In the alert's transaction: one first attempt per enabled webhook of the organization. */
export async function enqueueWebhookDeliveries(tx: Tx, organizationId: string, alertId: string): Promise<void> {
  const hooks = await tx.webhook.findMany({ where: { organizationId, enabled: true }, select: { id: true } });
  for (const h of hooks) {
    const d = await tx.webhookDelivery.create({ data: { webhookId: h.id, alertId, attempt: 1 } });
    await enqueueJob(tx, 'webhook_deliver', { deliveryId: d.id }, { jobKey: `webhook:${d.id}`, maxAttempts: 1 });
  }
}

/** HMAC-SHA256 signature header value of a body sent at `timestamp` (unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** The job: one attempt. Records the outcome; a failure schedules the next attempt, never a job retry. */
export async function deliverWebhook(deps: Deps, deliveryId: string): Promise<void> {
  const d = await deps.db.webhookDelivery.findUnique({ where: { id: deliveryId }, include: { webhook: true, alert: true } });
  if (!d || d.status !== 'PENDING') return;
  const a = d.alert;
  const body = JSON.stringify({
    id: a.id,
    type: a.type,
    severity: a.severity,
    message: a.message,
    organizationId: a.organizationId,
    environmentId: a.environmentId,
    operationId: a.operationId,
    createdAt: a.createdAt.toISOString(),
    attempt: d.attempt,
  });
  const timestamp = Math.floor(deps.clock.now().getTime() / 1000);
  let responseStatus: number | null = null;
  let error: string | null = null;
  try {
    const res = await fetch(d.webhook.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'Backplane-Webhook/1',
        'x-backplane-event': 'alert.created',
        'x-backplane-delivery': d.id,
        'x-backplane-timestamp': String(timestamp),
        'x-backplane-signature': signWebhook(deps.secrets.open(d.webhook.secretEncrypted), timestamp, body),
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    responseStatus = res.status;
    await res.body?.cancel().catch(() => undefined);
    if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
  } catch (err) {
    error = (err as Error).message.slice(0, 500);
  }
  await deps.db.$transaction(async (tx) => {
    await tx.webhookDelivery.update({ where: { id: d.id }, data: { status: error ? 'FAILED' : 'SUCCEEDED', responseStatus, error } });
    if (error && d.attempt < MAX_ATTEMPTS && d.webhook.enabled) {
      const next = await tx.webhookDelivery.create({ data: { webhookId: d.webhookId, alertId: d.alertId, attempt: d.attempt + 1 } });
      const runAt = new Date(Date.now() + BASE_BACKOFF_MS * 2 ** (d.attempt - 1));
      await enqueueJob(tx, 'webhook_deliver', { deliveryId: next.id }, { jobKey: `webhook:${next.id}`, runAt, maxAttempts: 1 });
    }
  });
}
