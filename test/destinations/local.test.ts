import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalBackend } from '../../src/destinations/local.ts';
import { describeBackendConformance } from './conformance.ts';

describeBackendConformance(
  'local',
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bp-local-backend-'));
    const backend = new LocalBackend(join(dir, 'repo'), { fsync: false });
    await backend.create();
    return { backend, cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
  { largeFileSize: 12 * 1024 * 1024 },
);
