/**
 * The catalog rows a benchmark that drives `backplane start` needs before the server can work:
 * an organization, a project, one PRODUCTION environment on the benchmark's database (with a 6 h
 * job timeout, so a GiB-sized step is never cut short), optionally a LOCAL destination attached
 * to it, and an admin API key. Written straight into the catalog, as an operator's setup would be.
 */
import { randomBytes } from 'node:crypto';
import { encodeGlobalID } from '@pothos/plugin-relay';
import { createSecretBox, redactUrl } from '../src/app/secrets.ts';
import type { Db } from '../src/db/client.ts';
import { issueApiKey } from '../src/services/api-keys.ts';

export async function seedEnvironment(
  db: Db,
  o: { name: string; projectName: string; databaseUrl: string; databaseName: string; filesPath?: string; repositoryPath?: string },
) {
  // The server seals and opens secrets with this key (BACKPLANE_SECRET_KEY).
  const secretKey = randomBytes(32).toString('hex');
  const secrets = createSecretBox(Buffer.from(secretKey, 'hex'));
  const org = await db.organization.create({ data: { name: o.name } });
  const project = await db.project.create({ data: { organizationId: org.id, name: o.projectName } });
  const env = await db.environment.create({
    data: {
      organizationId: org.id,
      projectId: project.id,
      name: 'production',
      type: 'PRODUCTION',
      databaseUrlEncrypted: secrets.seal(o.databaseUrl),
      databaseUrlRedacted: redactUrl(o.databaseUrl),
      databaseName: o.databaseName,
      filesPath: o.filesPath,
      settings: { create: { timeoutSeconds: 6 * 3600 } },
    },
  });
  const destination = o.repositoryPath
    ? await db.destination.create({ data: { organizationId: org.id, name: 'local', provider: 'LOCAL', config: { path: o.repositoryPath } } })
    : undefined;
  if (destination) await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: destination.id } });
  const key = (await issueApiKey(db, { organizationId: org.id, name: o.name.toLowerCase(), scopes: ['admin'] })).secret;
  return { secretKey, secrets, org, project, env, envGid: encodeGlobalID('Environment', env.id), destination, key };
}
