/**
 * The viewer's filters decide who may see what: they are checked here as real queries on a
 * migrated catalog (the same Prisma `where` every service and resolver uses), with two
 * organizations, two projects, and a restore from one project into the other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/client.ts';
import { canSeeProject, inProjectWhere, projectWhere, restoreLogWhere, type Viewer } from '../../src/services/viewer.ts';
import { freshDatabase } from '../harness/database.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let db: Db;
const ids = {} as Record<'orgA' | 'orgB' | 'p1' | 'p2' | 'pB' | 'e1' | 'e2' | 'eB' | 'log' | 'logB', string>;

const viewer = (organizationId: string, projectIds: string[] | null): Viewer => ({ organizationId, apiKeyId: 'k', scopes: new Set(['backups:read']), projectIds });

beforeAll(async () => {
  db = createDb(await freshDatabase('viewer'), { max: 2 });
  const secrets = createSecretBox(Buffer.alloc(32, 7));
  const [a, b] = [await makeOrganization(db), await makeOrganization(db)];
  const [p1, p2, pB] = [await makeProject(db, a.id), await makeProject(db, a.id), await makeProject(db, b.id)];
  const [e1, e2, eB] = [await makeEnvironment(db, secrets, p1), await makeEnvironment(db, secrets, p2), await makeEnvironment(db, secrets, pB)];
  const restore = async (org: string, project: string, from: string, to: string) => {
    const s = await db.snapshot.create({ data: { organizationId: org, projectId: project, environmentId: from, kind: 'MANUAL', includes: ['DB'], status: 'READY' } });
    const op = await db.operation.create({ data: { organizationId: org, environmentId: to, type: 'RESTORE', snapshotId: s.id } });
    return (await db.restoreLog.create({ data: { organizationId: org, snapshotId: s.id, sourceEnvironmentId: from, targetEnvironmentId: to, operationId: op.id, includes: ['DB'] } })).id;
  };
  Object.assign(ids, {
    orgA: a.id, orgB: b.id, p1: p1.id, p2: p2.id, pB: pB.id, e1: e1.id, e2: e2.id, eB: eB.id,
    // From project 1 into project 2: the log belongs to project 2.
    log: await restore(a.id, p1.id, e1.id, e2.id),
    logB: await restore(b.id, pB.id, eB.id, eB.id),
  });
});
afterAll(() => db?.$disconnect());

const sorted = (rows: { id: string }[]) => rows.map((r) => r.id).sort();

describe('canSeeProject', () => {
  it('an unrestricted key sees every project; a limited key only its own', () => {
    expect(canSeeProject(viewer(ids.orgA, null), ids.p2)).toBe(true);
    expect(canSeeProject(viewer(ids.orgA, [ids.p1]), ids.p1)).toBe(true);
    expect(canSeeProject(viewer(ids.orgA, [ids.p1]), ids.p2)).toBe(false);
    expect(canSeeProject(viewer(ids.orgA, []), ids.p1)).toBe(false);
  });
});

describe('projectWhere', () => {
  it("an unrestricted key sees its organization's projects, never another's", async () => {
    expect(sorted(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, null)) }))).toEqual([ids.p1, ids.p2].sort());
    expect(sorted(await db.project.findMany({ where: projectWhere(viewer(ids.orgB, null)) }))).toEqual([ids.pB]);
  });

  it('a limited key sees its projects only', async () => {
    expect(sorted(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, [ids.p1])) }))).toEqual([ids.p1]);
    expect(sorted(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, [])) }))).toEqual([]);
  });

  it("a caller's where narrows and never widens: asking for another project's or organization's id finds nothing", async () => {
    expect(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, [ids.p1]), { id: ids.p2 }) })).toEqual([]);
    expect(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, null), { id: ids.pB }) })).toEqual([]);
    expect(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, null), { organizationId: ids.orgB }) })).toEqual([]);
    expect(sorted(await db.project.findMany({ where: projectWhere(viewer(ids.orgA, null), { id: ids.p2 }) }))).toEqual([ids.p2]);
  });
});

describe('inProjectWhere', () => {
  it("rows of the viewer's projects only, whatever the caller asks for", async () => {
    expect(sorted(await db.environment.findMany({ where: inProjectWhere(viewer(ids.orgA, null)) }))).toEqual([ids.e1, ids.e2].sort());
    expect(sorted(await db.environment.findMany({ where: inProjectWhere(viewer(ids.orgA, [ids.p2])) }))).toEqual([ids.e2]);
    expect(await db.environment.findMany({ where: inProjectWhere(viewer(ids.orgA, [ids.p2]), { projectId: ids.p1 }) })).toEqual([]);
    expect(await db.environment.findMany({ where: inProjectWhere(viewer(ids.orgA, null), { id: ids.eB }) })).toEqual([]);
    expect(await db.environment.findMany({ where: inProjectWhere(viewer(ids.orgA, [ids.p1]), { organizationId: ids.orgB }) })).toEqual([]);
    expect(sorted(await db.environment.findMany({ where: inProjectWhere(viewer(ids.orgA, [ids.p1, ids.p2]), { id: ids.e1 }) }))).toEqual([ids.e1]);
  });
});

describe('restoreLogWhere', () => {
  it("a restore log is its target's: a key of the source's project does not see it, one of the target's does", async () => {
    expect(sorted(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgA, null)) }))).toEqual([ids.log]);
    expect(sorted(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgA, [ids.p2])) }))).toEqual([ids.log]);
    expect(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgA, [ids.p1])) })).toEqual([]);
    expect(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgA, [ids.p1]), { id: ids.log }) })).toEqual([]);
    expect(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgA, null), { id: ids.logB }) })).toEqual([]);
    expect(sorted(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgB, null)) }))).toEqual([ids.logB]);
    expect(sorted(await db.restoreLog.findMany({ where: restoreLogWhere(viewer(ids.orgA, null), { sourceEnvironmentId: ids.e1 }) }))).toEqual([ids.log]);
  });
});
