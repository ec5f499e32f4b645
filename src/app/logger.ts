import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout (or `fd`); `level: 'silent'` in tests that do not read them. */
export function createLogger(level: string = 'info', bindings: Record<string, unknown> = {}, fd: 1 | 2 = 1): Logger {
  const options = { level, base: { service: 'backplane', ...bindings }, timestamp: pino.stdTimeFunctions.isoTime };
  return fd === 1 ? pino(options) : pino(options, pino.destination({ fd, sync: true }));
}
