import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AlertCountsDocument,
  AlertCreatedDocument,
  AlertsDocument,
  CreateWebhookDocument,
  DeleteWebhookDocument,
  DismissAlertDocument,
  MarkAlertReadDocument,
  MarkAllAlertsReadDocument,
  UpdateEnvironmentSettingsDocument,
  WebhooksDocument,
} from '../generated/graphql.ts';
import { raiseAlert } from '../../src/services/alerts.ts';
import { BASE_BACKOFF_MS } from '../../src/services/webhooks.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { jobsWithKey, runJobNow, useManualClock, waitFor, type ManualClock } from '../harness/schedule-helpers.ts';
import { follow, startSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let limitedKey: string;
let orgId: string;
let env: LiveEnvironment;
let otherEnv: { id: string; projectId: string };
let clock: ManualClock;

beforeAll(async () => {
  app = await startTestApp();
  await app.startWorker();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  env = await makeLiveEnvironment(app, { organizationId: org.id, rows: 20 });
  otherEnv = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, await makeProject(app.runtime.db, org.id));
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['admin'] })).secret;
  // Limited to the live environment's project: never sees the other project's alerts.
  limitedKey = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'], projectIds: [env.projectId] })).secret;
  clock = useManualClock(app, '2033-01-01T00:00:00Z');
});
afterAll(() => app?.stop());

const alertIn = (environmentId: string | null, message: string) =>
  raiseAlert(app.runtime.deps, { organizationId: orgId, environmentId, type: 'VERIFICATION_FAILED', severity: 'CRITICAL', message });

/** Subscribes to alertCreated and resolves once the server has the subscription in place. */
async function subscribeAlerts(k: string) {
  const client = app.ws(k);
  const received: { id: string; message: string; operation?: { id: string; type: string; status: string } | null }[] = [];
  const before = app.runtime.events.subscriberCount();
  const done = (async () => {
    for await (const r of client.iterate({ query: print(AlertCreatedDocument) })) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      received.push((r.data as { alertCreated: (typeof received)[number] }).alertCreated);
    }
  })();
  await waitFor(async () => app.runtime.events.subscriberCount(), (n) => n > before, 'the alert subscription');
  return { received, done, stop: () => client.dispose() };
}

describe('alerts', () => {
  it('alertCreated delivers a failed snapshot alert with its operation; a limited key hears only its projects', async () => {
    const all = await subscribeAlerts(key);
    const limited = await subscribeAlerts(limitedKey);
    await alertIn(otherEnv.id, 'other project');
    // A real failure: the database is gone for a moment.
    await app.runtime.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: app.runtime.deps.secrets.seal(env.databaseUrl.replace(/\/[^/]+$/, '/missing_db')) } });
    const s = await startSnapshot(app, key, env.id, { includes: ['DB'] });
    expect((await follow(app, key, s.operationId)).at(-1)?.status).toBe('FAILED');
    await app.runtime.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: app.runtime.deps.secrets.seal(env.databaseUrl) } });

    await waitFor(async () => all.received.length, (n) => n === 2, 'two alerts for the admin key');
    await waitFor(async () => limited.received.length, (n) => n === 1, 'one alert for the limited key');
    expect(all.received[0].message).toBe('other project');
    expect(limited.received[0]).toMatchObject({ message: expect.stringContaining('failed'), operation: { id: s.operationId, type: 'SNAPSHOT', status: 'FAILED' } });
    expect(all.received[1].id).toBe(limited.received[0].id);
    await all.stop();
    await limited.stop();
  });

  it('lists newest first with paging; counts unread and undismissed; read, dismiss, read all', async () => {
    await app.gql(MarkAllAlertsReadDocument, {}, { key });
    for (const m of ['a', 'b', 'c']) await alertIn(env.id, `alert ${m}`);
    const page1 = await app.gql(AlertsDocument, { first: 2 }, { key: limitedKey });
    const conn = page1.data!.alerts;
    expect(conn.totalCount).toBe(4);
    expect(conn.edges.map((e) => e.node.message)).toEqual(['alert c', 'alert b']);
    expect(conn.edges[0].node).toMatchObject({ type: 'VERIFICATION_FAILED', severity: 'CRITICAL', read: false, dismissed: false, environment: { id: gid('Environment', env.id) } });
    const page2 = await app.gql(AlertsDocument, { first: 2, after: conn.pageInfo.endCursor }, { key: limitedKey });
    expect(page2.data!.alerts.edges.map((e) => e.node.message)).toEqual(['alert a', expect.stringContaining('failed')]);

    expect((await app.gql(AlertCountsDocument, {}, { key: limitedKey })).data?.alertCounts).toEqual({ unread: 3, undismissed: 4 });
    expect((await app.gql(AlertCountsDocument, {}, { key })).data?.alertCounts).toEqual({ unread: 3, undismissed: 5 });

    const [c, b] = conn.edges.map((e) => e.node.id);
    const read = await app.gql(MarkAlertReadDocument, { input: { id: c } }, { key: limitedKey });
    expect(read.data?.markAlertRead).toMatchObject({ __typename: 'AlertPayload', alert: { read: true, dismissed: false } });
    const dismissed = await app.gql(DismissAlertDocument, { input: { id: b } }, { key: limitedKey });
    expect(dismissed.data?.dismissAlert).toMatchObject({ alert: { read: true, dismissed: true } });
    expect((await app.gql(AlertCountsDocument, {}, { key: limitedKey })).data?.alertCounts).toEqual({ unread: 1, undismissed: 3 });
    expect((await app.gql(AlertsDocument, {}, { key: limitedKey })).data!.alerts.totalCount).toBe(3);
    expect((await app.gql(AlertsDocument, { includeDismissed: true }, { key: limitedKey })).data!.alerts.totalCount).toBe(4);

    const all = await app.gql(MarkAllAlertsReadDocument, {}, { key: limitedKey });
    expect(all.data?.markAllAlertsRead.count).toBe(1);
    expect((await app.gql(AlertCountsDocument, {}, { key: limitedKey })).data?.alertCounts).toEqual({ unread: 0, undismissed: 3 });
  });

  it('alerts of another project or organization are not found; a malformed id is a ValidationError', async () => {
    const other = await alertIn(otherEnv.id, 'not yours');
    const hidden = await app.gql(MarkAlertReadDocument, { input: { id: gid('Alert', other) } }, { key: limitedKey });
    expect(hidden.data?.markAlertRead).toMatchObject({ __typename: 'NotFoundError', code: 'ALERT_NOT_FOUND' });
    const otherOrg = await makeOrganization(app.runtime.db);
    const foreign = await raiseAlert(app.runtime.deps, { organizationId: otherOrg.id, type: 'SNAPSHOT_FAILED', severity: 'WARNING', message: 'theirs' });
    const f = await app.gql(DismissAlertDocument, { input: { id: gid('Alert', foreign) } }, { key });
    expect(f.data?.dismissAlert).toMatchObject({ __typename: 'NotFoundError', code: 'ALERT_NOT_FOUND' });
    expect((await app.runtime.db.alert.findUniqueOrThrow({ where: { id: foreign } })).dismissedAt).toBeNull();
    const bad = await app.gql(DismissAlertDocument, { input: { id: gid('Environment', env.id) } }, { key });
    expect(bad.data?.dismissAlert).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'id'] }] });
  });

  it('staleness: no success for longer than staleAfterHours raises one SNAPSHOT_STALE alert, not one per check', async () => {
    const res = await app.gql(UpdateEnvironmentSettingsDocument, { input: { environmentId: gid('Environment', otherEnv.id), staleAfterHours: 24 } }, { key });
    expect(res.data?.updateEnvironmentSettings.__typename).toBe('EnvironmentSettingsPayload');
    const stale = () => app.runtime.db.alert.findMany({ where: { environmentId: otherEnv.id, type: 'SNAPSHOT_STALE' } });
    // The last success was 10 hours ago (by the injected clock): fine.
    clock.set('2033-01-01T00:00:00Z');
    await app.runtime.db.snapshot.create({
      data: { organizationId: orgId, projectId: otherEnv.projectId, environmentId: otherEnv.id, includes: ['DB'], status: 'READY', completedAt: new Date('2032-12-31T14:00:00Z') },
    });
    const watch = async () => {
      const [before] = await jobsWithKey(app, 'schedule:watch');
      await runJobNow(app, 'schedule:watch');
      await waitFor(async () => (await jobsWithKey(app, 'schedule:watch'))[0], (j) => !!j && j.id !== before.id && !j.lockedAt, 'the watch to run and queue itself again');
    };
    await watch();
    expect(await stale()).toHaveLength(0);
    clock.set('2033-01-01T15:00:00Z');
    await watch();
    const alerts = await stale();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ severity: 'CRITICAL', message: expect.stringContaining('for 25 hours (the environment allows 24)') });
    clock.set('2033-01-01T16:00:00Z');
    await watch();
    expect(await stale()).toHaveLength(1);
    // The next periodic run is an hour of graphile-worker's time away.
    const [next] = await jobsWithKey(app, 'schedule:watch');
    expect(next.runAt.getTime() - Date.now()).toBeGreaterThan(3_500_000);
  });
});

describe('webhooks', () => {
  it('POSTs each alert signed with HMAC, retries a failure with backoff, and shows every attempt', async () => {
    const requests: { headers: http.IncomingHttpHeaders; body: string }[] = [];
    const statuses = [500, 204];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        requests.push({ headers: req.headers, body });
        res.statusCode = statuses.shift() ?? 204;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const bad = await app.gql(CreateWebhookDocument, { input: { url: 'ftp://example.com/x' } }, { key });
      expect(bad.data?.createWebhook).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'url'] }] });
      const forbidden = await app.gql(CreateWebhookDocument, { input: { url } }, { key: limitedKey });
      expect(forbidden.errors?.[0].extensions?.code).toBe('FORBIDDEN');
      const created = await app.gql(CreateWebhookDocument, { input: { url } }, { key });
      if (created.data?.createWebhook.__typename !== 'CreateWebhookPayload') throw new Error(JSON.stringify(created));
      const secret = created.data.createWebhook.secret;

      const alertId = await alertIn(env.id, 'hook me');
      await waitFor(async () => requests.length, (n) => n === 1, 'the first attempt');
      const first = requests[0];
      const ts = String(first.headers['x-backplane-timestamp']);
      expect(first.headers['x-backplane-signature']).toBe(`sha256=${createHmac('sha256', secret).update(`${ts}.${first.body}`).digest('hex')}`);
      expect(JSON.parse(first.body)).toMatchObject({ id: alertId, type: 'VERIFICATION_FAILED', message: 'hook me', environmentId: env.id, attempt: 1 });

      // The failed attempt is recorded, and the next one waits BASE_BACKOFF (30 s) of graphile-worker time.
      const deliveries = () => app.runtime.db.webhookDelivery.findMany({ where: { alertId }, orderBy: { attempt: 'asc' } });
      const pending = await waitFor(deliveries, (d) => d.length === 2, 'the second attempt to be queued');
      expect(pending[0]).toMatchObject({ attempt: 1, status: 'FAILED', responseStatus: 500, error: 'HTTP 500' });
      const [retry] = await jobsWithKey(app, `webhook:${pending[1].id}`);
      // Measured from when the failure was recorded (the retry's row is created in that same
      // transaction), not from now: the waits above may have taken any time on a busy machine.
      const backoff = retry.runAt.getTime() - pending[1].createdAt.getTime();
      expect(backoff).toBeGreaterThanOrEqual(BASE_BACKOFF_MS - 1_000);
      expect(backoff).toBeLessThan(2 * BASE_BACKOFF_MS);
      await runJobNow(app, `webhook:${pending[1].id}`);
      await waitFor(deliveries, (d) => d[1]?.status === 'SUCCEEDED', 'the retry to succeed');
      expect(requests).toHaveLength(2);
      expect(JSON.parse(requests[1].body)).toMatchObject({ id: alertId, attempt: 2 });

      const listed = await app.gql(WebhooksDocument, {}, { key });
      const hook = listed.data!.webhooks.find((w) => w.url === url)!;
      expect(hook.deliveries.totalCount).toBe(2);
      expect(hook.deliveries.edges.map((e) => [e.node.attempt, e.node.status, e.node.responseStatus])).toEqual([
        [2, 'SUCCEEDED', 204],
        [1, 'FAILED', 500],
      ]);
      const del = await app.gql(DeleteWebhookDocument, { input: { id: created.data.createWebhook.webhook.id } }, { key });
      expect(del.data?.deleteWebhook.__typename).toBe('DeletePayload');
      await alertIn(env.id, 'no hook any more');
      expect(await app.runtime.db.webhookDelivery.count()).toBe(0);
    } finally {
      server.close();
    }
  });
});
