/**
 * METRICS_TOKEN: when set, /metrics answers only the scraper that sends it (its labels name
 * environments, destinations and the operation names clients send); without it, /metrics asks for
 * nothing (metrics.test.ts scrapes it so).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../harness/app.ts';

const TOKEN = 'scrape-me-0123456789abcdef';
let app: TestApp;
let metricsUrl: string;

beforeAll(async () => {
  app = await startTestApp({ env: { METRICS_TOKEN: TOKEN } });
  metricsUrl = app.url.replace('/graphql', '/metrics');
});
afterAll(() => app?.stop());

it.each([
  ['no Authorization header', undefined],
  ['another token', 'Bearer scrape-me-0123456789abcdeX'],
  ['the token without the Bearer scheme', TOKEN],
  ['a prefix of the token', `Bearer ${TOKEN.slice(0, -1)}`],
])('refuses %s with 401 and no figures', async (_name, authorization) => {
  const res = await fetch(metricsUrl, { headers: authorization ? { authorization } : {} });
  expect(res.status).toBe(401);
  expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
  expect(await res.text()).not.toContain('backplane_');
});

it('answers the scraper that sends the token', async () => {
  const res = await fetch(metricsUrl, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(await res.text()).toContain('backplane_http_requests_total');
});

it('leaves the other routes as they were', async () => {
  expect((await fetch(app.url.replace('/graphql', '/healthz'))).status).toBe(200);
});
