/**
 * The event bus's delivery to a subscriber that reads slower than events arrive, on a real
 * LISTEN/NOTIFY connection.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/app/runtime.ts';
import { startServiceRuntime } from '../harness/service-runtime.ts';

let rt: Runtime;
beforeAll(async () => {
  rt = await startServiceRuntime('event_bus');
});
afterAll(() => rt?.close());

describe('subscribePublished with latestOnly', () => {
  it('hands a subscriber that fell behind only the newest event, the last (terminal) one included, while others hear every one', async () => {
    const id = randomUUID();
    const latest = rt.events.subscribePublished('operation', id, undefined, { latestOnly: true });
    const every = rt.events.subscribe('operation', id);
    for (const status of ['RUNNING', 'CANCELLING', 'CANCELLED']) await rt.events.publish('operation', id, { operationId: id, status });
    // Every event has been handed out once the other subscriber has read the last.
    const heard = [];
    for (let i = 0; i < 3; i++) heard.push((await every.next()).value?.status);
    expect(heard).toEqual(['RUNNING', 'CANCELLING', 'CANCELLED']);
    expect((await latest.next()).value?.payload).toEqual({ operationId: id, status: 'CANCELLED' });
    // Nothing older is left behind it: the next read waits for the next event.
    await rt.events.publish('operation', id, { operationId: id, status: 'QUEUED' });
    expect((await latest.next()).value?.payload).toEqual({ operationId: id, status: 'QUEUED' });
    await Promise.all([latest.return?.(), every.return?.()]);
  });
});
