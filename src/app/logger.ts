import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout; `level: 'silent'` in tests that do not read them. */
export function createLogger(level: string = 'info', bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { service: 'backplane', ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}
