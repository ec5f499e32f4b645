/**
 * How a failure is told in an operation's, snapshot's or alert's error field; shared by every
 * service that records one.
 */

/** A readable one-line reason for an operation's error field. */
export function messageOf(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n').slice(0, 3).join(' ').slice(0, 1000);
}
