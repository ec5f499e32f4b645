import { endsPromptly } from '../events/bus.ts';
import { GraphQLError } from 'graphql';
import { AlertSeverity, AlertType, WebhookDeliveryStatus } from '../generated/prisma/enums.ts';
import { alertCounts, alertWhere, dismissAlert, markAlertRead, markAllAlertsRead } from '../services/alerts.ts';
import { createWebhook, deleteWebhook } from '../services/webhooks.ts';
import { isVisible, typeAccess, visibleWhere } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { encodeGlobalID, parseId } from './ids.ts';
import { liveEvents, readOnce } from './live.ts';
import { DeletePayload } from './project.ts';
import { viewerOf } from './viewer-of.ts';

const AlertTypeEnum = builder.enumType(AlertType, { name: 'AlertType' });
const AlertSeverityEnum = builder.enumType(AlertSeverity, { name: 'AlertSeverity' });
const WebhookDeliveryStatusEnum = builder.enumType(WebhookDeliveryStatus, { name: 'WebhookDeliveryStatus' });

export const Alert = builder.prismaNode('Alert', {
  authScopes: typeAccess('Alert'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'Something a person should know about; read clears the badge, dismissed hides it',
  fields: (t) => ({
    type: t.expose('type', { type: AlertTypeEnum }),
    severity: t.expose('severity', { type: AlertSeverityEnum }),
    message: t.exposeString('message'),
    environment: t.relation('environment', { nullable: true }),
    operation: t.relation('operation', { nullable: true, description: 'The operation the alert is about, when there is one' }),
    read: t.boolean({ select: { readAt: true }, resolve: (a) => a.readAt !== null }),
    dismissed: t.boolean({ select: { dismissedAt: true }, resolve: (a) => a.dismissedAt !== null }),
    readAt: t.expose('readAt', { type: 'DateTime', nullable: true }),
    dismissedAt: t.expose('dismissedAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    deliveries: t.relation('deliveries', { query: (_a, ctx) => ({ where: visibleWhere(ctx, 'WebhookDelivery'), orderBy: { createdAt: 'asc' } }), description: 'Webhook delivery attempts of this alert (admin scope)' }),
  }),
});

builder.prismaNode('Webhook', {
  authScopes: typeAccess('Webhook'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'A URL that receives every alert of the organization as a signed POST',
  fields: (t) => ({
    url: t.exposeString('url'),
    enabled: t.exposeBoolean('enabled'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    deliveries: t.relatedConnection('deliveries', { cursor: 'id', totalCount: true, query: (_a, ctx) => ({ where: visibleWhere(ctx, 'WebhookDelivery'), orderBy: { id: 'desc' } }), description: 'Attempts, newest first' }),
  }),
});

builder.prismaObject('WebhookDelivery', {
  authScopes: typeAccess('WebhookDelivery'),
  description: 'One attempt to POST an alert to a webhook',
  fields: (t) => ({
    attempt: t.exposeInt('attempt'),
    status: t.expose('status', { type: WebhookDeliveryStatusEnum }),
    responseStatus: t.exposeInt('responseStatus', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    alert: t.relation('alert'),
  }),
});

const AlertCounts = builder.objectRef<{ unread: number; undismissed: number }>('AlertCounts').implement({
  fields: (t) => ({ unread: t.exposeInt('unread'), undismissed: t.exposeInt('undismissed') }),
});

builder.queryFields((t) => ({
  alerts: t.prismaConnection({
    type: 'Alert',
    cursor: 'id',
    authScopes: { read: true },
    description: 'Alerts of the organization (of visible projects for a limited key), newest first',
    args: { includeDismissed: t.arg.boolean({ defaultValue: false }) },
    totalCount: (_c, args, ctx) => ctx.deps.db.alert.count({ where: alertWhere(viewerOf(ctx), args.includeDismissed ? {} : { dismissedAt: null }) }),
    resolve: (query, _root, args, ctx) =>
      ctx.deps.db.alert.findMany({ ...query, where: alertWhere(viewerOf(ctx), args.includeDismissed ? {} : { dismissedAt: null }), orderBy: { id: 'desc' } }),
  }),
  alertCounts: t.field({
    type: AlertCounts,
    authScopes: { read: true },
    resolve: (_root, _args, ctx) => alertCounts(ctx.deps, viewerOf(ctx)),
  }),
  webhooks: t.prismaField({
    type: ['Webhook'],
    authScopes: { admin: true },
    resolve: (query, _root, _args, ctx) => ctx.deps.db.webhook.findMany({ ...query, where: visibleWhere(ctx, 'Webhook'), orderBy: { createdAt: 'asc' } }),
  }),
}));

const AlertIdInput = builder.inputType('AlertIdInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

const AlertPayload = builder.objectRef<{ alertId: string }>('AlertPayload').implement({
  fields: (t) => ({
    alert: t.prismaField({ type: 'Alert', resolve: (q, p, _a, ctx) => ctx.deps.db.alert.findUniqueOrThrow({ ...q, where: { id: p.alertId } }) }),
  }),
});

const MarkAllAlertsReadPayload = builder.objectRef<{ count: number }>('MarkAllAlertsReadPayload').implement({
  fields: (t) => ({ count: t.exposeInt('count', { description: 'Alerts that were unread' }) }),
});

const CreateWebhookInput = builder.inputType('CreateWebhookInput', {
  fields: (t) => ({
    url: t.string({ required: true }),
    secret: t.string({ description: 'HMAC secret (16+ characters); generated when left out' }),
  }),
});

const CreateWebhookPayload = builder.objectRef<{ webhookId: string; secret: string }>('CreateWebhookPayload').implement({
  fields: (t) => ({
    webhook: t.prismaField({ type: 'Webhook', resolve: (q, p, _a, ctx) => ctx.deps.db.webhook.findUniqueOrThrow({ ...q, where: { id: p.webhookId } }) }),
    secret: t.exposeString('secret', { description: 'Shown once: signs each delivery (X-Backplane-Signature: sha256=HMAC(secret, "<timestamp>.<body>"))' }),
  }),
});

const alertIdOf = (input: { id: string | number }) => parseId(String(input.id), 'Alert', ['input', 'id']);

builder.mutationFields((t) => ({
  markAlertRead: t.field({
    type: AlertPayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'MarkAlertReadResult' } },
    args: { input: t.arg({ type: AlertIdInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ alertId: await markAlertRead(ctx.deps, viewerOf(ctx), alertIdOf(input)) }),
  }),
  dismissAlert: t.field({
    type: AlertPayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'DismissAlertResult' } },
    args: { input: t.arg({ type: AlertIdInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ alertId: await dismissAlert(ctx.deps, viewerOf(ctx), alertIdOf(input)) }),
  }),
  markAllAlertsRead: t.field({
    type: MarkAllAlertsReadPayload,
    authScopes: { write: true },
    resolve: async (_root, _args, ctx) => ({ count: await markAllAlertsRead(ctx.deps, viewerOf(ctx)) }),
  }),
  createWebhook: t.field({
    type: CreateWebhookPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'CreateWebhookResult' } },
    args: { input: t.arg({ type: CreateWebhookInput, required: true }) },
    resolve: (_root, { input }, ctx) => createWebhook(ctx.deps, viewerOf(ctx), input),
  }),
  deleteWebhook: t.field({
    type: DeletePayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'DeleteWebhookResult' } },
    args: { input: t.arg({ type: builder.inputType('DeleteWebhookInput', { fields: (f) => ({ id: f.id({ required: true }) }) }), required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = await deleteWebhook(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Webhook', ['input', 'id']));
      return { deletedId: encodeGlobalID('Webhook', id) };
    },
  }),
}));

builder.subscriptionFields((t) => ({
  alertCreated: t.field({
    type: Alert,
    authScopes: { read: true },
    description: "Each new alert of the organization the key may see, as it is raised",
    subscribe: (_root, _args, ctx) => endsPromptly(async function* (track) {
      const events = liveEvents(ctx, track, 'alertCreated', viewerOf(ctx).organizationId);
      try {
        for await (const e of events) {
          // Read once for every subscriber; each one's rule then decides, so a limited key never hears of other projects' alerts.
          const alert = await readOnce(e.payload, 'alert', () => ctx.deps.db.alert.findUnique({ where: { id: e.payload.alertId }, include: { environment: { select: { projectId: true } } } }));
          events.assertLive();
          if (alert && (await isVisible(ctx, 'Alert', alert))) yield alert;
        }
      } finally {
        await events.return?.();
      }
    }),
    resolve: (a) => {
      if (!a) throw new GraphQLError('Alert not found');
      return a;
    },
  }),
}));
