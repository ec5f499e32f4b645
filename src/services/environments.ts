import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError } from '../domain/errors.ts';
import { databaseNameOf, databaseUrl, filesPath, name, parseInput } from '../domain/validation.ts';
import { publishInTransaction } from '../events/bus.ts';
import { redactUrl } from '../app/secrets.ts';
import type { Deps } from './deps.ts';
import { nameTakenOr } from './prisma-errors.ts';
import { getProject } from './projects.ts';
import { inProjectWhere, type Viewer } from './viewer.ts';

export const ENVIRONMENT_TYPES = ['PRODUCTION', 'STAGING', 'DEVELOPMENT', 'PREVIEW', 'OTHER'] as const;

const createEnvironmentInput = z.object({
  projectId: z.string(),
  name,
  type: z.enum(ENVIRONMENT_TYPES).default('DEVELOPMENT'),
  databaseUrl,
  filesPath: filesPath.nullish(),
});

const updateEnvironmentInput = z
  .object({
    name: name.optional(),
    type: z.enum(ENVIRONMENT_TYPES).optional(),
    databaseUrl: databaseUrl.optional(),
    filesPath: filesPath.nullish(),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), { message: 'nothing to update', path: [] });

/** Reads one environment the viewer may see, or ENVIRONMENT_NOT_FOUND. */
export async function getEnvironment(deps: Deps, viewer: Viewer, id: string) {
  const env = await deps.db.environment.findFirst({ where: inProjectWhere(viewer, { id }) });
  if (!env) throw NotFoundError.environment();
  return env;
}

/** The database URL in clear, for the worker's pg_dump/pg_restore only; never for the API. */
export async function environmentDatabaseUrl(deps: Deps, environmentId: string): Promise<string> {
  const env = await deps.db.environment.findUniqueOrThrow({ where: { id: environmentId } });
  return deps.secrets.open(env.databaseUrlEncrypted);
}

function secretFields(deps: Deps, url: string) {
  return { databaseUrlEncrypted: deps.secrets.seal(url), databaseUrlRedacted: redactUrl(url), databaseName: databaseNameOf(url) };
}

export async function createEnvironment(deps: Deps, viewer: Viewer, raw: z.input<typeof createEnvironmentInput>): Promise<string> {
  const input = parseInput(createEnvironmentInput, raw);
  const project = await getProject(deps, viewer, input.projectId);
  // The organization's defaults, oldest first: a new environment can be snapshotted at once.
  const defaults = await deps.db.destination.findMany({ where: { organizationId: project.organizationId, isDefault: true }, orderBy: { createdAt: 'asc' }, select: { id: true } });
  const base = deps.clock.now().getTime();
  try {
    const env = await deps.db.environment.create({
      data: {
        organizationId: project.organizationId,
        projectId: project.id,
        name: input.name,
        type: input.type,
        filesPath: input.filesPath ?? null,
        ...secretFields(deps, input.databaseUrl),
        settings: { create: {} },
        // Order is kept through createdAt, as setEnvironmentDestinations does.
        destinations: { create: defaults.map((d, i) => ({ destinationId: d.id, createdAt: new Date(base + i) })) },
      },
    });
    return env.id;
  } catch (err) {
    nameTakenOr(err, 'environment in this project');
  }
}

export async function updateEnvironment(deps: Deps, viewer: Viewer, id: string, raw: z.input<typeof updateEnvironmentInput>): Promise<string> {
  const input = parseInput(updateEnvironmentInput, raw);
  await getEnvironment(deps, viewer, id);
  try {
    await deps.db.$transaction(async (tx) => {
      await tx.environment.update({
        where: { id },
        data: {
          ...(input.name !== undefined ? { name: input.name } : {}),
          ...(input.type !== undefined ? { type: input.type } : {}),
          ...(input.filesPath !== undefined ? { filesPath: input.filesPath } : {}),
          ...(input.databaseUrl !== undefined ? secretFields(deps, input.databaseUrl) : {}),
        },
      });
      await publishInTransaction(tx, 'environmentActivity', id, { kind: 'ENVIRONMENT_UPDATED', environmentId: id, subjectId: id });
    });
  } catch (err) {
    nameTakenOr(err, 'environment in this project');
  }
  return id;
}

export async function deleteEnvironment(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  await getEnvironment(deps, viewer, id);
  await deps.db.$transaction(async (tx) => {
    // The row lock makes a job queued at the same moment wait for this transaction (its operation
    // row references the environment), so the check below sees every job that could still run.
    await tx.$queryRaw`SELECT id FROM environments WHERE id = ${id} FOR UPDATE`;
    // A job under way would lose its rows mid-way and leave what it made (a restore's database
    // `<db>__bp_restore_<id>`, a new environment's database and folder) with nothing to clean it up.
    const busy = await tx.operation.findFirst({
      where: { status: { in: ['QUEUED', 'RUNNING'] }, OR: [{ environmentId: id }, { restoreLogs: { some: { sourceEnvironmentId: id } } }] },
      select: { type: true, status: true },
    });
    if (busy) throw new ConflictError(ErrorCode.OPERATION_RUNNING, `A ${busy.type.toLowerCase().replace(/_/g, ' ')} of this environment is ${busy.status.toLowerCase()}: cancel it or wait until it ends, then delete the environment`);
    await tx.environment.delete({ where: { id } });
    await publishInTransaction(tx, 'environmentActivity', id, { kind: 'ENVIRONMENT_DELETED', environmentId: id, subjectId: id });
  });
  return id;
}
