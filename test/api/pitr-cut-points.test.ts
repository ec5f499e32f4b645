/**
 * The cut points of the growing WAL segment's copies outlive the streamer that made them: a
 * worker that stops mid-segment (its lease goes to another, or it restarts) leaves the next copy
 * cut where the earlier ones ended, not by content alone (which would store the segment's WAL
 * once more). Against a PostgreSQL source of its own with the real pg_receivewal, measured in
 * the repository's blobs and the uploads' added bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScratchPostgres } from '../../src/db/pg-server.ts';
import { LocalBackend } from '../../src/destinations/local.ts';
import { findSnapshot, Repository, resolvePath } from '../../src/engine/api.ts';
import type { PitrSupervisor } from '../../src/services/pitr-streamer.ts';
import type { TestApp } from '../harness/app.ts';
import { repositoryPassword, sql } from '../harness/live-environment.ts';
import { startWalArchivingSuite, type WalArchivingSuite } from '../harness/pitr-fixture.ts';
import { waitFor } from '../harness/schedule-helpers.ts';

let suite: WalArchivingSuite;
let app: TestApp;
let source: ScratchPostgres;
let sourceUrl: string;
let envId: string;
let destinationId: string;
let repoPath: string;

const db = () => app.runtime.db;

beforeAll(async () => {
  suite = await startWalArchivingSuite({ name: 'pitr-cuts', walArchiveIntervalSeconds: 5, seed: (url) => sql(url, 'CREATE TABLE ticks (id serial PRIMARY KEY, pad text)') });
  ({ app, source, sourceUrl, envId, destinationId, repoPath } = suite);
}, 120_000);

afterAll(() => suite?.stop());

const supervise = (name: string) => suite.supervise(name);
const streaming = (s: PitrSupervisor, what: string) => waitFor(async () => s.streaming()[0]?.receiverPid ?? null, (p) => p !== null, what, 60_000);
/** The segment WAL goes into now (the insert position: the scratch server commits asynchronously, so the written one lags). */
const currentSegment = async () => (await sql(source.adminUrl, 'SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS n')).rows[0].n as string;

describe('PITR: cut points across streamers', () => {
  it('a streamer stopped and another started mid-segment cuts the next copy where the earlier ones ended: it adds only the new WAL', async () => {
    const first = supervise('worker-a');
    await streaming(first, 'worker-a streaming');
    const cluster = await db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } });
    // A segment of its own (a switch after nothing written would stay in the one there is).
    await sql(sourceUrl, "INSERT INTO ticks (pad) SELECT repeat('y', 100) FROM generate_series(1, 500)");
    const switchedFrom = await currentSegment();
    await sql(source.adminUrl, 'SELECT pg_switch_wal()');
    // Read once something is written after the switch: at a segment's very start, pg_walfile_name
    // names the segment before.
    await sql(sourceUrl, "INSERT INTO ticks (pad) VALUES ('after the switch')");
    const name = await currentSegment();
    expect(name).not.toBe(switchedFrom);
    const copies = async () => (await db().walUpload.findMany({ where: { destinationId }, orderBy: { createdAt: 'asc' } })).filter((u) => u.files.includes(`${name}.partial`));
    // Three copies, each ending a few hundred KB after the last (closer than the chunker's 512 KiB
    // minimum: content alone would cut none of them where they ended).
    for (let i = 1; i <= 3; i++) {
      // Counted first: the streamer's own tick may upload the new WAL before archiveNow does.
      const from = (await copies()).length;
      await sql(sourceUrl, 'INSERT INTO ticks (pad) SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, 1500)');
      // Again until a copy holds it: on a loaded machine the receiver may lag behind an upload's mark.
      await waitFor(async () => (await first.archiveNow(cluster.id), (await copies()).length), (n) => n > from, `copy ${i} of ${name}`, 60_000);
    }
    const before = await copies();
    expect(before.length).toBeGreaterThanOrEqual(3);
    await first.stop();
    const heir = supervise('worker-b');
    await streaming(heir, 'worker-b streaming');
    await sql(sourceUrl, "INSERT INTO ticks (pad) SELECT repeat('n', 40) FROM generate_series(1, 100)");
    await heir.archiveNow(cluster.id);
    const after = (await copies()).slice(before.length);
    expect(after.length).toBeGreaterThanOrEqual(1);
    expect(await currentSegment()).toBe(name);
    const repo = await Repository.open(new LocalBackend(repoPath), await repositoryPassword(app, destinationId));
    try {
      const content = async (u: { repoSnapshotId: string }) => (await resolvePath(repo, await findSnapshot(repo, u.repoSnapshotId), `/pitr/${cluster.systemIdentifier}/wal/${name}.partial`)).content!;
      const last = await content(before.at(-1)!);
      const next = new Set(await content(after[0]));
      // Of the last copy before the stop, only the zeros after where it ended may be stored differently.
      for (const id of last.filter((id) => !next.has(id))) expect((await repo.loadBlob('data', id)).every((x) => x === 0)).toBe(true);
    } finally {
      await repo.close();
    }
    // What the stopped streamer's copies stored of the segment is not stored again.
    const storedBefore = before.reduce((n, u) => n + Number(u.addedBytes), 0);
    expect(storedBefore).toBeGreaterThan(128 << 10);
    expect(Number(after[0].addedBytes)).toBeLessThan(storedBefore / 4);
  }, 180_000);
});
