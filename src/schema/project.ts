import { createProject, deleteProject, updateProject } from '../services/projects.ts';
import { projectWhere } from '../services/viewer.ts';
import { typeAccess } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { viewerOf } from './viewer-of.ts';

export const Project = builder.prismaNode('Project', {
  authScopes: typeAccess('Project'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  fields: (t) => ({
    name: t.exposeString('name'),
    description: t.exposeString('description', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryFields((t) => ({
  projects: t.prismaConnection({
    type: 'Project',
    cursor: 'id',
    authScopes: { read: true },
    description: 'Projects visible to this key, oldest first',
    totalCount: (_conn, _args, ctx) => ctx.deps.db.project.count({ where: projectWhere(viewerOf(ctx)) }),
    resolve: (query, _root, _args, ctx) =>
      ctx.deps.db.project.findMany({ ...query, where: projectWhere(viewerOf(ctx)), orderBy: { id: 'asc' } }),
  }),
  project: t.prismaField({
    type: 'Project',
    nullable: true,
    authScopes: { read: true },
    description: 'One project; null when it does not exist or is not visible to this key.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => {
      let projectId: string;
      try {
        projectId = parseId(String(id), 'Project', ['id']);
      } catch {
        return null;
      }
      return ctx.deps.db.project.findFirst({ ...query, where: projectWhere(viewerOf(ctx), { id: projectId }) });
    },
  }),
}));

const CreateProjectInput = builder.inputType('CreateProjectInput', {
  fields: (t) => ({
    name: t.string({ required: true, description: '1–64 characters: letters, digits, spaces, "-", "_", "."' }),
    description: t.string({ description: 'Up to 500 characters' }),
  }),
});

const UpdateProjectInput = builder.inputType('UpdateProjectInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string(),
    description: t.string(),
  }),
});

const DeleteProjectInput = builder.inputType('DeleteProjectInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

const ProjectPayload = builder.objectRef<{ projectId: string }>('ProjectPayload').implement({
  fields: (t) => ({
    project: t.prismaField({
      type: 'Project',
      resolve: (query, p, _args, ctx) => ctx.deps.db.project.findUniqueOrThrow({ ...query, where: { id: p.projectId } }),
    }),
  }),
});

/** The payload of every delete mutation: the global id of what is gone. */
export const DeletePayload = builder.objectRef<{ deletedId: string }>('DeletePayload').implement({
  fields: (t) => ({ deletedId: t.exposeID('deletedId') }),
});

builder.mutationFields((t) => ({
  createProject: t.field({
    type: ProjectPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'CreateProjectResult' } },
    args: { input: t.arg({ type: CreateProjectInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ projectId: await createProject(ctx.deps, viewerOf(ctx), input) }),
  }),
  updateProject: t.field({
    type: ProjectPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'UpdateProjectResult' } },
    args: { input: t.arg({ type: UpdateProjectInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = parseId(String(input.id), 'Project', ['input', 'id']);
      const { id: _ignored, ...changes } = input;
      return { projectId: await updateProject(ctx.deps, viewerOf(ctx), id, { name: changes.name ?? undefined, description: changes.description }) };
    },
  }),
  deleteProject: t.field({
    type: DeletePayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'DeleteProjectResult' } },
    args: { input: t.arg({ type: DeleteProjectInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      await deleteProject(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Project', ['input', 'id']));
      return { deletedId: String(input.id) };
    },
  }),
}));
