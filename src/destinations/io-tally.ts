import type { Backend } from './backend.ts';

/**
 * Bytes read from and written to each destination by this thread, for /metrics. A tally is taken
 * (and so emptied) by whoever reports it: a worker after each job, over the event bus; the API
 * when it is scraped. Each byte is reported once, whichever runs in the thread. Only what goes
 * through the Backend interface counts: a codec thread that reads a local pack by its path
 * (small-file restores) is not seen.
 */

export interface IoTally {
  destinationId: string;
  read: number;
  written: number;
}

const tally = new Map<string, { read: number; written: number }>();

function count(destinationId: string, read: number, written: number): void {
  const t = tally.get(destinationId) ?? { read: 0, written: 0 };
  t.read += read;
  t.written += written;
  tally.set(destinationId, t);
}

/** What was counted since the last take, per destination; empties the tally. */
export function takeIoTally(): IoTally[] {
  const out = [...tally].map(([destinationId, t]) => ({ destinationId, ...t }));
  tally.clear();
  return out;
}

/**
 * The backend, counting the bytes of each whole save and load under the destination's id. A proxy
 * rather than a new object: whatever else the backend offers (LocalBackend's `create`, which
 * Repository.init looks for; `instanceof`) stays as it was.
 */
export function countingBackend<B extends Backend>(inner: B, destinationId: string): B {
  const save: Backend['save'] = async (h, data, opts) => {
    await inner.save(h, data, opts);
    count(destinationId, 0, data.byteLength);
  };
  const load: Backend['load'] = async (h, opts) => {
    const bytes = await inner.load(h, opts);
    count(destinationId, bytes.length, 0);
    return bytes;
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'save') return save;
      if (prop === 'load') return load;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
