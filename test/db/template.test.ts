import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/client.ts';
import { createScratchDatabase, freshDatabase } from '../harness/database.ts';

const clients: Db[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.$disconnect()));
});

describe('harness databases', () => {
  it('freshDatabase gives each caller its own migrated database that the generated client can use', async () => {
    const [a, b] = await Promise.all([freshDatabase('a'), freshDatabase('b')]);
    expect(a).not.toBe(b);
    const dbA = createDb(a);
    const dbB = createDb(b);
    clients.push(dbA, dbB);
    const org = await dbA.organization.create({ data: { name: 'Acme' } });
    expect(await dbA.organization.findUniqueOrThrow({ where: { id: org.id } })).toMatchObject({ name: 'Acme' });
    expect(await dbB.organization.count()).toBe(0);
  });

  it('freshDatabase has graphile-worker installed, so jobs can be added in SQL', async () => {
    const client = new pg.Client({ connectionString: await freshDatabase('jobs') });
    await client.connect();
    try {
      await client.query(`SELECT graphile_worker.add_job('noop', '{}'::json)`);
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM graphile_worker.jobs`);
      expect(rows).toEqual([{ n: 1 }]);
    } finally {
      await client.end();
    }
  });

  it('createScratchDatabase gives an empty database', async () => {
    const client = new pg.Client({ connectionString: await createScratchDatabase('env') });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      await client.end();
    }
  });
});
