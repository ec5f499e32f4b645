/**
 * Input rules that hold for every caller. Every String/ID argument and input field of the schema refuses a NUL character (PostgreSQL
 * cannot store one) as VALIDATION_FAILED, never as an internal error. The cases are generated from
 * the schema itself, so a mutation or query added later is covered without touching this file.
 */
import {
  getNamedType,
  getNullableType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  isUnionType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLObjectType,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../../src/schema/index.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let key: string;
let orgId: string;

beforeAll(async () => {
  app = await startTestApp();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['admin'] })).secret;
});
afterAll(() => app?.stop());

const NUL = 'bad\0value';

/** A value of the input type with every field filled (optional ones too), and the paths of its string leaves. */
function sample(type: GraphQLInputType, path: string[], leaves: string[][], depth = 0): unknown {
  const t = getNullableType(type) as GraphQLInputType;
  if (isListType(t)) return [sample(t.ofType, [...path, '0'], leaves, depth)];
  if (isEnumType(t)) return t.getValues()[0].value;
  if (isInputObjectType(t)) {
    const out: Record<string, unknown> = {};
    for (const f of Object.values(t.getFields())) {
      if (depth > 3 && !isNonNullType(f.type)) continue;
      out[f.name] = sample(f.type, [...path, f.name], leaves, depth + 1);
    }
    return out;
  }
  if (isScalarType(t)) {
    switch (t.name) {
      case 'String':
      case 'ID':
        leaves.push(path);
        return 'x';
      case 'Int':
      case 'Float':
        return 1;
      case 'Boolean':
        return true;
      case 'DateTime':
        return '2030-01-01T00:00:00.000Z';
      case 'BigInt':
        return '1';
      case 'JSON':
        return {};
      case 'Upload':
        // A file travels as a multipart part, never as a string in JSON (see import.test.ts).
        return null;
    }
  }
  throw new Error(`no sample for ${String(t)}`);
}

function setAt(target: Record<string, unknown>, path: string[], value: unknown) {
  let o = target as Record<string, unknown>;
  for (const p of path.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[path.at(-1)!] = value;
}

function selection(field: GraphQLField<unknown, unknown>): string {
  const t = getNamedType(field.type);
  if (isUnionType(t)) {
    const typed = t.getTypes().some((m) => m.getInterfaces().some((i) => i.name === 'Error'));
    return `{ __typename ${typed ? '... on Error { code } ... on ValidationError { fields { path message } }' : ''} }`;
  }
  if (isObjectType(t) || isInterfaceType(t)) return '{ __typename }';
  return '';
}

interface Case {
  root: 'query' | 'mutation';
  field: string;
  path: string[];
  query: string;
  variables: Record<string, unknown>;
}

function casesOf(root: 'query' | 'mutation', type: GraphQLObjectType): Case[] {
  const cases: Case[] = [];
  for (const field of Object.values(type.getFields())) {
    if (field.args.length === 0) continue;
    const leaves: string[][] = [];
    const base: Record<string, unknown> = {};
    for (const a of field.args) base[a.name] = sample(a.type, [a.name], leaves);
    const decl = field.args.map((a) => `$${a.name}: ${String(a.type)}`).join(', ');
    const pass = field.args.map((a) => `${a.name}: $${a.name}`).join(', ');
    const query = `${root} (${decl}) { ${field.name}(${pass}) ${selection(field)} }`;
    for (const path of leaves) {
      const variables = structuredClone(base);
      setAt(variables, path, NUL);
      cases.push({ root, field: field.name, path, query, variables });
    }
  }
  return cases;
}

describe('string inputs', () => {
  it('every String/ID argument and input field, of every mutation and query, refuses a NUL character as VALIDATION_FAILED', async () => {
    const cases = [...casesOf('mutation', schema.getMutationType()!), ...casesOf('query', schema.getQueryType()!)];
    const mutations = new Set(cases.filter((c) => c.root === 'mutation').map((c) => c.field));
    // The generator found the schema's string inputs, not an empty list.
    expect(mutations.size).toBeGreaterThan(25);
    for (const name of ['createProject', 'updateProject', 'createSnapshot', 'pinSnapshot', 'createEnvironment', 'createDestination']) expect(mutations).toContain(name);

    const wrong: string[] = [];
    for (const c of cases) {
      const res = await app.post({ query: c.query, variables: c.variables }, { key });
      const body = (await res.json()) as { data?: Record<string, { __typename?: string; code?: string; fields?: { path: string[] }[] } | null>; errors?: { extensions?: { code?: string; fields?: { path: string[] }[] } }[] };
      const result = body.data?.[c.field];
      const fields = result?.__typename === 'ValidationError' ? result.fields : body.errors?.[0]?.extensions?.code === 'VALIDATION_FAILED' ? body.errors[0].extensions.fields : undefined;
      if (!fields?.some((f) => f.path.join('.') === c.path.join('.'))) wrong.push(`${c.root} ${c.field} ${c.path.join('.')}: ${JSON.stringify(body).slice(0, 300)}`);
    }
    console.log(`string inputs: ${cases.length} calls over ${mutations.size} mutations and ${new Set(cases.filter((c) => c.root === 'query').map((c) => c.field)).size} queries`);
    expect(wrong).toEqual([]);
  });

  it('a NUL in a project description changes nothing', async () => {
    const before = await app.runtime.db.project.count();
    const res = await app.post({ query: 'mutation ($input: CreateProjectInput!) { createProject(input: $input) { __typename ... on ValidationError { code fields { path message } } } }', variables: { input: { name: 'nul', description: 'a\0b' } } }, { key });
    expect(await res.json()).toEqual({ data: { createProject: { __typename: 'ValidationError', code: 'VALIDATION_FAILED', fields: [{ path: ['input', 'description'], message: 'must not contain NUL characters' }] } } });
    expect(await app.runtime.db.project.count()).toBe(before);
  });
});

async function call(query: string, variables: Record<string, unknown>) {
  return (await (await app.post({ query, variables }, { key })).json()) as { data?: Record<string, unknown>; errors?: unknown[] };
}

describe('labels and sizes', () => {
  it('a blank snapshot label or pin label is refused, and nothing is recorded', async () => {
    const db = app.runtime.db;
    const project = await makeProject(db, orgId);
    const env = await makeEnvironment(db, app.runtime.deps.secrets, project);
    const snapshot = await db.snapshot.create({ data: { organizationId: orgId, projectId: project.id, environmentId: env.id, kind: 'MANUAL', includes: ['DB'], status: 'READY' } });
    const before = await db.snapshot.count();
    for (const label of ['   ', '', '\t\n']) {
      const created = await call('mutation ($input: CreateSnapshotInput!) { createSnapshot(input: $input) { __typename ... on ValidationError { fields { path } } } }', { input: { environmentId: gid('Environment', env.id), label } });
      expect(created.data?.createSnapshot).toEqual({ __typename: 'ValidationError', fields: [{ path: ['input', 'label'] }] });
      const pinned = await call('mutation ($input: PinSnapshotInput!) { pinSnapshot(input: $input) { __typename ... on ValidationError { fields { path } } } }', { input: { id: gid('Snapshot', snapshot.id), label } });
      expect(pinned.data?.pinSnapshot).toEqual({ __typename: 'ValidationError', fields: [{ path: ['input', 'label'] }] });
    }
    expect(await db.snapshot.count()).toBe(before);
    expect((await db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).pinned).toBe(false);
  });

  it('estimateSnapshotSize on a database nobody answers for is a typed DATABASE_UNREACHABLE', async () => {
    const project = await makeProject(app.runtime.db, orgId);
    const env = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, project, { databaseUrl: 'postgres://app:secret@127.0.0.1:1/nothing', filesPath: null });
    const res = await call('query ($id: ID!) { estimateSnapshotSize(environmentId: $id) { __typename ... on Error { code message } } }', { id: gid('Environment', env.id) });
    expect(res.errors).toBeUndefined();
    expect(res.data?.estimateSnapshotSize).toMatchObject({ __typename: 'ConflictError', code: 'DATABASE_UNREACHABLE', message: expect.stringContaining('cannot be reached') });
    expect(JSON.stringify(res)).not.toContain('secret');
  });
});
