import { decodeGlobalID } from '@pothos/plugin-relay';
import type { Db } from '../db/client.ts';
import { ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';

/**
 * Finds an environment by what an operator types on a command line: its name (`demo`), its
 * project and name (`shop/production`), its global id as the API shows it, or its row id.
 * Across the whole catalog (the command line works with the catalog's own credentials), so a
 * name that several projects or organizations use is refused with the ways to tell them apart.
 */
export async function findEnvironmentByRef(db: Db, ref: string) {
  const wanted = ref.trim();
  if (!wanted) throw ValidationError.field(['environment'], 'must name an environment');
  const byId = idOf(wanted);
  if (byId) {
    const env = await db.environment.findUnique({ where: { id: byId }, include: { project: true } });
    if (env) return env;
  }
  const slash = wanted.indexOf('/');
  const where = slash > 0 ? { name: wanted.slice(slash + 1), project: { name: wanted.slice(0, slash) } } : { name: wanted };
  const found = await db.environment.findMany({ where, include: { project: true }, orderBy: { id: 'asc' }, take: 20 });
  if (found.length === 1) return found[0];
  if (found.length > 1) {
    const choices = found.map((e) => `${e.project.name}/${e.name} (${e.id})`).join(', ');
    throw ValidationError.field(['environment'], `"${wanted}" names ${found.length} environments; say which: ${choices}`);
  }
  const known = await db.environment.findMany({ include: { project: true }, orderBy: { id: 'asc' }, take: 10 });
  throw new NotFoundError(
    ErrorCode.ENVIRONMENT_NOT_FOUND,
    known.length ? `No environment "${wanted}"; there are: ${known.map((e) => `${e.project.name}/${e.name}`).join(', ')}` : `No environment "${wanted}": the catalog has none`,
  );
}

/** The row id a global id or a bare UUID stands for, or null when `ref` is neither. */
function idOf(ref: string): string | null {
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ref)) return ref.toLowerCase();
  try {
    const d = decodeGlobalID(ref);
    return d.typename === 'Environment' && d.id ? d.id : null;
  } catch {
    return null;
  }
}
