/**
 * Following an operation until it ends, through lost connections: each (re)connect first re-reads
 * the operation with a query, so whatever happened while the client was away is seen, then
 * subscribes again. Only a server that stays unreachable past `giveUpAfterMs` ends the watch.
 */
import { ClientOperationStateDocument, ClientWatchOperationDocument, type ClientOperationFragment } from './generated/graphql.ts';
import { ApiError, ConnectionError, type ApiClient } from './api.ts';

export type OperationState = ClientOperationFragment;

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
export const isTerminal = (s: OperationState) => TERMINAL.has(s.status);

export interface WatchOptions {
  onState(state: OperationState): void;
  /** A connection was lost (or could not be made); the next attempt starts after `delayMs`. */
  onReconnect(err: Error, delayMs: number): void;
  giveUpAfterMs?: number;
}

export async function watchOperation(api: ApiClient, id: string, opts: WatchOptions): Promise<OperationState> {
  const giveUpAfterMs = opts.giveUpAfterMs ?? 120_000;
  let failingSince: number | undefined;
  let delay = 250;
  for (;;) {
    try {
      const { operation } = await api.request(ClientOperationStateDocument, { id });
      if (!operation) throw new ApiError(`operation ${id} not found (or not visible to this key)`, 'NOT_FOUND');
      failingSince = undefined;
      delay = 250;
      opts.onState(operation);
      if (isTerminal(operation)) return operation;
      for await (const event of api.subscribe(ClientWatchOperationDocument, { id })) {
        opts.onState(event.operation);
        if (isTerminal(event.operation)) return event.operation;
      }
      // The server ended the subscription without an end state (it is shutting down): read again.
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > giveUpAfterMs) throw err;
      opts.onReconnect(err, delay);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}
