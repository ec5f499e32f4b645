import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stdout (stderr for commands whose stdout is their result, such as
 * `api-key create`, so `KEY=$(backplane api-key create)` gets the key alone); `level: 'silent'`
 * in tests that do not read them.
 */
export function createLogger(level: string = 'info', bindings: Record<string, unknown> = {}, fd: 1 | 2 = 1): Logger {
  const options = { level, base: { service: 'backplane', ...bindings }, timestamp: pino.stdTimeFunctions.isoTime };
  return fd === 2 ? pino(options, pino.destination({ fd: 2, sync: true })) : pino(options);
}
