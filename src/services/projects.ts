import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { description, name, parseInput } from '../domain/validation.ts';
import type { Deps } from './deps.ts';
import { nameTakenOr } from './prisma-errors.ts';
import { projectWhere, type Viewer } from './viewer.ts';

const createProjectInput = z.object({ name, description: description.nullish() });
const updateProjectInput = z
  .object({ name: name.optional(), description: description.nullish() })
  .refine((v) => v.name !== undefined || v.description !== undefined, { message: 'nothing to update', path: [] });

/** Reads one project the viewer may see, or PROJECT_NOT_FOUND. */
export async function getProject(deps: Deps, viewer: Viewer, id: string) {
  const project = await deps.db.project.findFirst({ where: projectWhere(viewer, { id }) });
  if (!project) throw NotFoundError.project();
  return project;
}

export async function createProject(deps: Deps, viewer: Viewer, raw: z.input<typeof createProjectInput>): Promise<string> {
  const input = parseInput(createProjectInput, raw);
  if (viewer.projectIds) {
    // The new project would be invisible to a key limited to other projects.
    throw ValidationError.field(['input'], 'a key limited to some projects cannot create projects');
  }
  try {
    const p = await deps.db.project.create({
      data: { organizationId: viewer.organizationId, name: input.name, description: input.description ?? null },
    });
    return p.id;
  } catch (err) {
    nameTakenOr(err, 'project');
  }
}

export async function updateProject(deps: Deps, viewer: Viewer, id: string, raw: z.input<typeof updateProjectInput>): Promise<string> {
  const input = parseInput(updateProjectInput, raw);
  await getProject(deps, viewer, id);
  try {
    await deps.db.project.update({
      where: { id },
      data: { ...(input.name !== undefined ? { name: input.name } : {}), ...(input.description !== undefined ? { description: input.description } : {}) },
    });
  } catch (err) {
    nameTakenOr(err, 'project');
  }
  return id;
}

/** Deletes an empty project; one that still has environments is refused (PROJECT_NOT_EMPTY). */
export async function deleteProject(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  await getProject(deps, viewer, id);
  return deps.db.$transaction(async (tx) => {
    const envs = await tx.environment.count({ where: { projectId: id } });
    if (envs > 0) throw new ConflictError(ErrorCode.PROJECT_NOT_EMPTY, `Project still has ${envs} environment(s); delete them first`);
    await tx.project.delete({ where: { id } });
    return id;
  });
}
