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

describe('subscribePublished with replaces', () => {
  it('hands a subscriber that fell behind the newest of each run of replaceable events, every other one kept, while others hear every one', async () => {
    const id = randomUUID();
    const slow = rt.events.subscribePublished('operation', id, undefined, { replaces: (unread, next) => unread.status === next.status });
    const every = rt.events.subscribe('operation', id);
    const sent = ['RUNNING', 'RUNNING', 'QUEUED', 'RUNNING', 'RUNNING', 'RUNNING', 'SUCCEEDED'];
    for (const status of sent) await rt.events.publish('operation', id, { operationId: id, status });
    // Every event has been handed out once the other subscriber has read the last.
    const heard: (string | undefined)[] = [];
    for (const _ of sent) heard.push((await every.next()).value?.status);
    expect(heard).toEqual(sent);
    const got: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) got.push((await slow.next()).value?.payload.status);
    expect(got).toEqual(['RUNNING', 'QUEUED', 'RUNNING', 'SUCCEEDED']);
    // Nothing is left behind the last: the next read waits for the next event.
    await rt.events.publish('operation', id, { operationId: id, status: 'FAILED' });
    expect((await slow.next()).value?.payload).toEqual({ operationId: id, status: 'FAILED' });
    await Promise.all([slow.return?.(), every.return?.()]);
  });
});
