import { z } from 'zod';
import { ValidationError } from './errors.ts';

/**
 * Input rules shared by every caller (GraphQL, jobs, the CLI, the embedded bootstrap). Services
 * parse their input with `parseInput` before any side effect; failures carry field paths as the
 * caller sent them (`["input", "name"]`).
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, root: string[] = ['input']): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(
    result.error.issues.map((i) => ({ path: [...root, ...i.path.map(String)], message: i.message })),
  );
}

const trimmed = (min: number, max: number) => z.string().trim().min(min, `must be at least ${min} character(s)`).max(max, `must be at most ${max} characters`);

/** Names people type: letters, digits, spaces, `-`, `_`, `.`; no control characters. */
export const name = trimmed(1, 64).regex(/^[\p{L}\p{N}][\p{L}\p{N} _.-]*$/u, 'may contain letters, digits, spaces, "-", "_" and "." and must start with a letter or digit');

export const description = trimmed(0, 500);

/** A label people attach (snapshot, pin): omitted for none, never blank. */
export const label = z.string().trim().min(1, 'must not be blank (leave it out for no label)').max(200, 'must be at most 200 characters');

/**
 * A URL field: parsed once, then `problem` names what is wrong with it (or returns null). Every URL
 * input goes through here so "is not a valid URL" reads the same everywhere.
 */
export function urlField(problem: (u: URL) => string | null, max = 2000) {
  return z
    .string()
    .trim()
    .max(max, `must be at most ${max} characters`)
    .superRefine((v, ctx) => {
      let u: URL;
      try {
        u = new URL(v);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'is not a valid URL' });
        return;
      }
      const message = problem(u);
      if (message) ctx.addIssue({ code: 'custom', message });
    });
}

/** A PostgreSQL connection URL naming a database. */
export const databaseUrl = urlField((u) => {
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') return 'must be a postgres:// or postgresql:// URL';
  if (!u.hostname) return 'must name a host';
  if (u.pathname.length <= 1) return 'must name a database (postgres://user:pass@host/dbname)';
  return null;
});

/** The database a URL points at. */
export function databaseNameOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/** An absolute directory path on the worker's machine. */
export const filesPath = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(1024, 'must be at most 1024 characters')
  .refine((v) => v.startsWith('/'), 'must be an absolute path')
  .refine((v) => !v.split('/').includes('..'), 'must not contain ".." segments')
  .refine((v) => !v.includes('\0'), 'must not contain NUL characters');
