/**
 * Factories for rows a test needs, written straight through Prisma (the API under test is not
 * used to set up its own preconditions). Each takes overrides.
 */
import { randomBytes } from 'node:crypto';
import type { Db } from '../../src/db/client.ts';
import type { Scope } from '../../src/domain/scopes.ts';
import { issueApiKey } from '../../src/services/api-keys.ts';
import { createSecretBox, redactUrl, type SecretBox } from '../../src/app/secrets.ts';
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';

const suffix = () => randomBytes(3).toString('hex');

export const gid = (type: string, id: string) => encodeGlobalID(type, id);
/** The catalog id inside a global id. */
export const rawId = (globalId: string) => decodeGlobalID(globalId).id;

export async function makeOrganization(db: Db, overrides: { name?: string } = {}) {
  return db.organization.create({ data: { name: overrides.name ?? `Org ${suffix()}` } });
}

export async function makeApiKey(db: Db, organizationId: string, overrides: { scopes?: Scope[]; projectIds?: string[]; name?: string; expiresAt?: Date } = {}) {
  return issueApiKey(db, {
    organizationId,
    name: overrides.name ?? `key ${suffix()}`,
    scopes: overrides.scopes ?? ['admin'],
    projectIds: overrides.projectIds,
    expiresAt: overrides.expiresAt,
  });
}

export async function makeProject(db: Db, organizationId: string, overrides: { name?: string } = {}) {
  return db.project.create({ data: { organizationId, name: overrides.name ?? `Project ${suffix()}` } });
}

export async function makeEnvironment(
  db: Db,
  secrets: SecretBox,
  project: { id: string; organizationId: string },
  overrides: { name?: string; databaseUrl?: string; filesPath?: string | null } = {},
) {
  const url = overrides.databaseUrl ?? `postgres://app:s3cret@127.0.0.1:5432/app_${suffix()}`;
  return db.environment.create({
    data: {
      organizationId: project.organizationId,
      projectId: project.id,
      name: overrides.name ?? `env-${suffix()}`,
      databaseUrlEncrypted: secrets.seal(url),
      databaseUrlRedacted: redactUrl(url),
      databaseName: new URL(url).pathname.slice(1),
      filesPath: overrides.filesPath === undefined ? '/srv/files' : overrides.filesPath,
      settings: { create: {} },
    },
  });
}

export { createSecretBox };
