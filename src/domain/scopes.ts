/** API key scopes as written in the API and the docs, and what each one includes. */
export const SCOPES = ['backups:read', 'backups:write', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** Stored form (Prisma enum) of each scope. */
export const scopeToDb = { 'backups:read': 'BACKUPS_READ', 'backups:write': 'BACKUPS_WRITE', admin: 'ADMIN' } as const;
export const scopeFromDb = { BACKUPS_READ: 'backups:read', BACKUPS_WRITE: 'backups:write', ADMIN: 'admin' } as const;

/** admin ⊇ write ⊇ read: a key holding a wider scope may do what a narrower one allows. */
export function expandScopes(held: readonly Scope[]): Set<Scope> {
  const out = new Set<Scope>(held);
  if (out.has('admin')) out.add('backups:write');
  if (out.has('backups:write')) out.add('backups:read');
  return out;
}
