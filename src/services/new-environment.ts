import { lstat, rm } from 'node:fs/promises';
import path from 'node:path';
import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { redactUrl } from '../app/secrets.ts';
import { siblingUrl } from '../sources/connection.ts';
import { truncateBytes } from '../sources/names.ts';
import { databaseExists, dropMarkedDatabase, mayCreateDatabases, newDatabaseMarker } from '../sources/new-database.ts';
import type { Deps } from './deps.ts';
import { nameTakenOr } from './prisma-errors.ts';

/**
 * A restore into a new environment (`restoreSnapshot(newEnvironment: …)`): the environment is
 * created in the snapshot's project with the request, as PROVISIONING, with a database of its own
 * on the source's server (same connection, database `<source db>_<name>`) and a folder beside the
 * source's (`<source folder>-<name>`). The restore job fills both under restore names and renames
 * them in at the end; the environment becomes READY with its success, FAILED otherwise (its
 * database and folder removed; the row stays, so its operation, restore log and alert keep
 * their environment, and deleting it frees the name). Snapshots, restores and drills refuse an
 * environment that is not READY.
 */

/** Lowercase letters, digits and `_`: the environment's name as part of a database or folder name. */
function slug(name: string): string {
  return name.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '_').replace(/^_+|_+$/g, '') || 'env';
}

type Tx = Parameters<Parameters<Deps['db']['$transaction']>[0]>[0];

export interface NewEnvironmentPlan {
  databaseUrl: string;
  databaseName: string;
  filesPath: string | null;
}

async function pathExists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/**
 * Where the new environment's database and folder go, checked before anything is made: the
 * source's role may create databases (else DATABASE_CREATE_FORBIDDEN), and neither the database
 * nor the folder exists yet (else NAME_TAKEN).
 */
export async function planNewEnvironment(
  deps: Deps,
  source: { id: string; databaseName: string; filesPath: string | null },
  name: string,
  withFiles: boolean,
): Promise<NewEnvironmentPlan> {
  const project = await deps.db.environment.findUniqueOrThrow({ where: { id: source.id }, select: { projectId: true } });
  // Asked first, as the transaction will again: the cheapest refusal, before the server is asked anything.
  if (await deps.db.environment.findFirst({ where: { projectId: project.projectId, name } })) throw new ConflictError(ErrorCode.NAME_TAKEN, 'An environment in this project with this name already exists');
  const sourceUrl = deps.secrets.open((await deps.db.environment.findUniqueOrThrow({ where: { id: source.id } })).databaseUrlEncrypted);
  if (withFiles && !source.filesPath) throw ValidationError.field(['input', 'includes'], 'the snapshot’s environment has no files path to put the new folder beside');
  const databaseName = truncateBytes(`${source.databaseName}_${slug(name)}`, 63);
  const databaseUrl = siblingUrl(sourceUrl, databaseName);
  let allowed: boolean;
  try {
    allowed = await mayCreateDatabases(sourceUrl);
  } catch (err) {
    throw new ConflictError(ErrorCode.DATABASE_UNREACHABLE, `The source environment's database server cannot be reached: ${(err as Error).message}`);
  }
  if (!allowed) {
    throw new ConflictError(ErrorCode.DATABASE_CREATE_FORBIDDEN, 'The role of the source environment’s connection may not create databases (it needs CREATEDB), so no new environment can be made on its server');
  }
  if (await databaseExists(sourceUrl, databaseName)) throw new ConflictError(ErrorCode.NAME_TAKEN, `A database named ${databaseName} already exists on the source's server`);
  const filesPath = withFiles ? path.join(path.dirname(source.filesPath!), `${path.basename(source.filesPath!)}-${slug(name)}`) : null;
  if (filesPath && (await pathExists(filesPath))) throw new ConflictError(ErrorCode.NAME_TAKEN, `${filesPath} already exists`);
  return { databaseUrl, databaseName, filesPath };
}

/** Creates the PROVISIONING environment in the transaction that records its restore. NAME_TAKEN when the project has one of that name. */
export async function createProvisioningEnvironment(
  tx: Tx,
  deps: Deps,
  source: { id: string; organizationId: string; projectId: string },
  input: { name: string; type: 'PRODUCTION' | 'STAGING' | 'DEVELOPMENT' | 'PREVIEW' | 'OTHER' },
  plan: NewEnvironmentPlan,
) {
  const destinations = await tx.environmentDestination.findMany({ where: { environmentId: source.id }, orderBy: { createdAt: 'asc' } });
  try {
    return await tx.environment.create({
      data: {
        organizationId: source.organizationId,
        projectId: source.projectId,
        name: input.name,
        type: input.type,
        status: 'PROVISIONING',
        filesPath: plan.filesPath,
        databaseUrlEncrypted: deps.secrets.seal(plan.databaseUrl),
        databaseUrlRedacted: redactUrl(plan.databaseUrl),
        databaseName: plan.databaseName,
        settings: { create: {} },
        // Its snapshots go where its source's go.
        destinations: { create: destinations.map((d) => ({ destinationId: d.destinationId, createdAt: d.createdAt })) },
      },
    });
  } catch (err) {
    nameTakenOr(err, 'environment in this project');
  }
}

/**
 * What a restore into a new environment that did not succeed leaves under the environment's own
 * names after its commit began (the database renamed in, the folder moved in): removed, the
 * database only when it carries the restore's marker. Returns what it found.
 */
export async function discardNewEnvironment(deps: Deps, restoreLogId: string, restoreId: string): Promise<string[]> {
  const log = await deps.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId }, include: { targetEnvironment: true } });
  const env = log.targetEnvironment;
  if (!log.newEnvironment || env.status === 'READY') return [];
  const found: string[] = [];
  const url = deps.secrets.open(env.databaseUrlEncrypted);
  if (await dropMarkedDatabase(url, env.databaseName, newDatabaseMarker(restoreId))) found.push('new database');
  if (env.filesPath && (await pathExists(env.filesPath))) {
    await rm(env.filesPath, { recursive: true, force: true });
    found.push('new files folder');
  }
  return found;
}
