/**
 * `backplane repo` end to end: the real command in a child process against a local repository,
 * with restic reading what it wrote. One repository is shared by the steps of the main flow,
 * so they run in order.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, describeTree, makeFixtureTree, seededBytes, tempDir } from '../engine/helpers.ts';
import { ok, PASSWORD, REPO_ARGV, repoCli, TEST_KDF, type CliOptions } from './helpers.ts';
import { requireTool } from '../harness/prerequisites.ts';

const run = promisify(execFile);
await requireTool('restic', ['version'], 'apt-get install restic');

afterAll(cleanupTempDirs);

describe('backplane repo on a local repository', () => {
  let repoDir: string;
  let src: string;
  let env: NodeJS.ProcessEnv;
  /** Stands in for `pg_dump -Fc` output: incompressible bytes with text in between. */
  const dump = Buffer.concat([seededBytes('dump-a', 1_500_000), Buffer.from('COPY public.t (id, name) FROM stdin;\n'.repeat(20_000)), seededBytes('dump-b', 700_000)]);
  let dirSnapshot: string;
  let stdinSnapshot: string;
  let cacheDir: string;
  const repo = (args: string[], opts: CliOptions = {}) => repoCli(args, { ...opts, env: { ...env, ...opts.env } });

  beforeAll(async () => {
    const work = await tempDir('bp-cli-');
    repoDir = join(work, 'repo');
    src = join(work, 'src');
    await mkdir(src);
    await makeFixtureTree(src);
    cacheDir = join(work, 'cache');
    env = { BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: PASSWORD, BACKPLANE_CACHE_DIR: cacheDir };
  });

  it('init creates a repository, and refuses to create it twice', async () => {
    const r = ok(await repo(['init', '--json']));
    expect(r.json()).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{64}$/), version: 2, location: repoDir });
    expect((await readdir(repoDir)).sort()).toEqual(expect.arrayContaining(['config', 'data', 'index', 'keys', 'locks', 'snapshots']));

    const again = await repo(['init']);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`backplane: a repository already exists at ${repoDir}\n`);
  });

  it('backs up a directory with tags', async () => {
    const r = ok(await repo(['backup', src, '--tag', 'files', '--tag', 'a,b', '--json']));
    const res = r.json();
    expect(res).toMatchObject({ files: 11, paths: [src], tags: ['files', 'a', 'b'] });
    expect(res.bytesAdded).toBeGreaterThan(0);
    expect(res.parent).toBeUndefined();
    dirSnapshot = res.snapshotId;
  });

  it('backs up a stream from stdin without a file on disk', async () => {
    const r = ok(await repo(['backup', '--stdin-filename', 'db/app.dump', '--tag', 'db', '--json'], { input: dump }));
    const res = r.json();
    expect(res).toMatchObject({ files: 1, bytesProcessed: dump.length, paths: ['/db/app.dump'] });
    stdinSnapshot = res.snapshotId;
  });

  it('a second backup of the same paths takes the last one as parent and stores no new data', async () => {
    const r = ok(await repo(['backup', src, '--json']));
    const res = r.json();
    expect(res.parent).toBe(dirSnapshot);
    expect(res.dataBlobsAdded).toBe(0);
    // The directory's files cache, under the repository's id; --no-cache neither reads nor writes one.
    const [repoId] = await readdir(cacheDir);
    expect(await readdir(join(cacheDir, repoId, 'files'))).toHaveLength(1);
    const none = join(cacheDir, 'none');
    const uncached = ok(await repo(['backup', src, '--no-cache', '--parent', dirSnapshot, '--json'], { env: { BACKPLANE_CACHE_DIR: none } })).json();
    await expect(readdir(none)).rejects.toMatchObject({ code: 'ENOENT' });
    // Forget them again, by id prefix, so the rest of the flow sees two snapshots.
    ok(await repo(['forget', res.snapshotId.slice(0, 12), uncached.snapshotId.slice(0, 12)]));
  });

  it('snapshots --json lists both, oldest first, with restic field names', async () => {
    const list = ok(await repo(['snapshots', '--json'])).json<any[]>();
    expect(list.map((s) => s.id)).toEqual([dirSnapshot, stdinSnapshot]);
    expect(list[0]).toMatchObject({ short_id: dirSnapshot.slice(0, 8), paths: [src], tags: ['files', 'a', 'b'], tree: expect.any(String) });
    expect(ok(await repo(['snapshots', '--tag', 'db', '--json'])).json<any[]>().map((s) => s.id)).toEqual([stdinSnapshot]);

    const text = ok(await repo(['snapshots'])).text;
    expect(text).toContain(dirSnapshot.slice(0, 8));
    expect(text).toContain('/db/app.dump');
  });

  it('ls lists a snapshot, or one path of it', async () => {
    const all = ok(await repo(['ls', dirSnapshot.slice(0, 8)])).text.split('\n').filter(Boolean);
    expect(all).toContain(`${src}/hello.txt`);
    expect(all).toContain(`${src}/sub dir/deeper/deep.bin`);
    expect(all).toContain(`${src}/ünïcødé ✓/ファイル.txt`);

    const sub = ok(await repo(['ls', dirSnapshot, `${src}/sub dir`, '--json'])).json();
    expect(sub.entries.map((e: { path: string }) => e.path)).toEqual([`${src}/sub dir`, `${src}/sub dir/deeper`, `${src}/sub dir/deeper/deep.bin`, `${src}/sub dir/file with spaces.txt`]);
    expect(sub.entries[2]).toMatchObject({ type: 'file', size: 200 * 1024 });

    const long = ok(await repo(['ls', '-l', 'latest', '/db'])).text;
    expect(long).toMatch(new RegExp(`^-rw------- .* ${dump.length} .* /db/app\\.dump$`, 'm'));
  });

  it('dump streams one file byte for byte, and a directory as tar', async () => {
    const file = ok(await repo(['dump', 'latest', '/db/app.dump']));
    expect(file.stdout.equals(dump)).toBe(true);

    const tar = ok(await repo(['dump', dirSnapshot, src]));
    const out = await tempDir('bp-cli-tar-');
    await writeFile(join(out, 'a.tar'), tar.stdout);
    await mkdir(join(out, 'x'));
    await run('tar', ['-xf', join(out, 'a.tar'), '-C', join(out, 'x')]);
    const want = await describeTree(src);
    const got = await describeTree(join(out, 'x'));
    // tar keeps file contents, modes and links; compare those.
    const strip = (t: Record<string, string>) =>
      Object.fromEntries(Object.entries(t).filter(([, v]) => !v.startsWith('dir')).map(([k, v]) => [k, v.startsWith('file') ? v.split(' ').filter((_, i) => i !== 2).join(' ') : v]));
    expect(strip(got)).toEqual(strip(want));
  });

  it('dump into a reader that stops early ends quietly, as a tool killed by SIGPIPE would', async () => {
    const [program, ...prefix] = REPO_ARGV;
    const child = spawn(program, [...prefix, 'dump', 'latest', '/db/app.dump'], {
      env: { ...process.env, ...env, BACKPLANE_REPO_KDF: TEST_KDF },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // The dump is larger than a pipe buffer, so closing after the first piece leaves it writing.
    child.stdout.once('data', () => child.stdout.destroy());
    const [code] = await once(child, 'close');
    expect(code).toBe(141);
    expect(stderr).toBe('');
  });

  it('restore writes the snapshot back with the same bytes, modes and times', async () => {
    const target = await tempDir('bp-cli-restore-');
    const r = ok(await repo(['restore', dirSnapshot.slice(0, 10), '--target', target, '--json']));
    expect(r.json()).toMatchObject({ snapshotId: dirSnapshot, files: 11 });
    expect(await describeTree(join(target, src))).toEqual(await describeTree(src));
  });

  it('restore --include restores one path, keeping its place under the target', async () => {
    const target = await tempDir('bp-cli-include-');
    ok(await repo(['restore', dirSnapshot, '--target', target, '--include', `${src}/sub dir`]));
    expect(await describeTree(join(target, src))).toEqual(
      Object.fromEntries(Object.entries(await describeTree(src)).filter(([k]) => k.startsWith('sub dir')).map(([k, v]) => [k, v])),
    );

    const one = await tempDir('bp-cli-include-');
    ok(await repo(['restore', 'latest', '--target', one, '--include', '/db/app.dump']));
    expect((await readFile(join(one, 'db', 'app.dump'))).equals(dump)).toBe(true);
  });

  it('restic reads the repository the CLI wrote', async () => {
    const { stdout } = await run('restic', ['-r', repoDir, '--no-cache', 'snapshots', '--json'], {
      env: { ...process.env, RESTIC_PASSWORD: PASSWORD },
    });
    const list = JSON.parse(stdout) as { id: string; paths: string[]; tags?: string[] }[];
    expect(list.map((s) => s.id).sort()).toEqual([dirSnapshot, stdinSnapshot].sort());
    expect(list.find((s) => s.id === stdinSnapshot)).toMatchObject({ paths: ['/db/app.dump'], tags: ['db'] });
    const dumped = await run('restic', ['-r', repoDir, '--no-cache', 'dump', stdinSnapshot, '/db/app.dump'], {
      env: { ...process.env, RESTIC_PASSWORD: PASSWORD },
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(Buffer.from(dumped.stdout).equals(dump)).toBe(true);
  });

  it('forget and prune remove a snapshot and the data only it used; check --read-data stays clean', async () => {
    const before = await countPacks(repoDir);
    const f = ok(await repo(['forget', dirSnapshot.slice(0, 8), '--json'])).json();
    expect(f.removed).toEqual([dirSnapshot]);
    expect(f.kept).toEqual([stdinSnapshot]);
    const p = ok(await repo(['prune', '--json'])).json();
    expect(p.packsDeleted + p.packsRepacked).toBeGreaterThan(0);
    expect(p.bytesFreed).toBeGreaterThan(0);
    expect(await countPacks(repoDir)).toBeLessThan(before);

    const c = ok(await repo(['check', '--read-data', '--json'])).json();
    expect(c).toMatchObject({ ok: true, errors: [], snapshots: 1 });
    expect(c.packsRead).toBe(c.packs);
    expect(ok(await repo(['snapshots', '--json'])).json<any[]>().map((s) => s.id)).toEqual([stdinSnapshot]);
    // What is left still restores.
    expect(ok(await repo(['dump', 'latest', '/db/app.dump'])).stdout.equals(dump)).toBe(true);
  });

  it('forget --keep-last keeps the newest snapshots of each host and paths', async () => {
    const a = ok(await repo(['backup', '--stdin-filename', 'db/app.dump', '--json'], { input: Buffer.from('one') })).json().snapshotId;
    const b = ok(await repo(['backup', '--stdin-filename', 'db/app.dump', '--json'], { input: Buffer.from('two') })).json().snapshotId;
    const other = ok(await repo(['backup', '--stdin-filename', 'other.txt', '--json'], { input: Buffer.from('x') })).json().snapshotId;
    const dry = ok(await repo(['forget', '--keep-last', '1', '--dry-run', '--json'])).json();
    expect(dry.removed.sort()).toEqual([stdinSnapshot, a].sort());
    expect(ok(await repo(['snapshots', '--json'])).json<any[]>()).toHaveLength(4);
    const res = ok(await repo(['forget', '--keep-last', '1', '--prune', '--json'])).json();
    expect(res.kept.sort()).toEqual([b, other].sort());
    expect(res.prune.packsKept).toBeGreaterThan(0);
    ok(await repo(['check']));
  });

  it('check --read-data finds a damaged pack: exit 1 and one error line', async () => {
    const packs = await listPacks(repoDir);
    const victim = packs[0];
    const bytes = await readFile(victim);
    bytes[10] ^= 0xff;
    await writeFile(victim, bytes);
    const r = await repo(['check', '--read-data']);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/^error: /m);
    expect(r.stderr).toMatch(/^backplane: repository contains \d+ error\(s\)\n$/);
  });

  it('repair drops that pack, names the snapshots that lost data; forget and prune then leave a clean repository', async () => {
    const victim = basename((await listPacks(repoDir))[0]);
    const dry = await repo(['repair', '--dry-run', '--json']);
    expect(dry.code).toBe(1);
    expect(dry.json()).toMatchObject({ dryRun: true, damaged: [{ packId: victim }], indexFilesReplaced: 0 });
    expect((await listPacks(repoDir)).map((p) => basename(p))).toContain(victim);

    const r = await repo(['repair', '--json']);
    const res = r.json();
    expect(res.damaged).toMatchObject([{ packId: victim }]);
    expect(res.damaged[0].lost.length).toBeGreaterThan(0);
    expect(res.damagedSnapshots.length).toBeGreaterThan(0);
    expect(r.code).toBe(1);
    expect((await listPacks(repoDir)).map((p) => basename(p))).not.toContain(victim);
    const again = await repo(['repair']);
    expect(again.code).toBe(0);
    expect(again.text).toMatch(/no damaged packs found/);
    ok(await repo(['forget', '--prune', ...res.damagedSnapshots]));
    ok(await repo(['check', '--read-data']));
  });
});

describe('backplane repo failures', () => {
  let repoDir: string;
  beforeAll(async () => {
    repoDir = join(await tempDir('bp-cli-fail-'), 'repo');
    ok(await repoCli(['init', '--repo', repoDir], { env: { BACKPLANE_REPO_PASSWORD: PASSWORD } }));
  });

  it('wrong password: exit 1 and one line', async () => {
    const r = await repoCli(['snapshots'], { env: { BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: 'not it' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('backplane: wrong password or no key found\n');
    expect(r.text).toBe('');
  });

  it('reads the password from --password-file, dropping the trailing newline', async () => {
    const file = join(await tempDir(), 'pw');
    await writeFile(file, `${PASSWORD}\n`);
    const r = ok(await repoCli(['--repo', repoDir, 'snapshots', '--json', '--password-file', file], { env: { BACKPLANE_REPO_PASSWORD: '' } }));
    expect(r.json()).toEqual([]);
  });

  it('no repository there: exit 1', async () => {
    const r = await repoCli(['snapshots', '--repo', join(repoDir, 'nope')], { env: { BACKPLANE_REPO_PASSWORD: PASSWORD } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`backplane: no repository at ${join(repoDir, 'nope')}\n`);
  });

  it('usage errors exit 2 with one line', async () => {
    const env = { BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: PASSWORD };
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /^backplane: unknown command "frobnicate"/],
      [['snapshots', '--bogus'], /^backplane: Unknown option '--bogus'/],
      [['backup'], /^backplane: backup needs at least one path/],
      [['restore', 'latest'], /^backplane: restore needs --target DIR/],
      [['forget', '--keep-last', 'x'], /^backplane: --keep-last wants a non-negative integer/],
      [['dump', 'latest', '/x', '--archive', 'zip'], /^backplane: unknown --archive "zip"/],
      // The engine reads "" as a prefix of every id: with one snapshot it would be forgotten.
      [['forget', ''], /^backplane: "" is not a snapshot/],
      [['ls', 'not-hex'], /^backplane: "not-hex" is not a snapshot/],
    ];
    for (const [args, message] of cases) {
      const r = await repoCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
    }
    const noRepo = await repoCli(['snapshots'], { env: { BACKPLANE_REPO: '', BACKPLANE_REPO_PASSWORD: PASSWORD } });
    expect(noRepo.code).toBe(2);
    expect(noRepo.stderr).toMatch(/^backplane: no repository given/);
    const noPassword = await repoCli(['snapshots', '--repo', repoDir], { env: { BACKPLANE_REPO_PASSWORD: undefined } });
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toMatch(/^backplane: no password given/);
  });

  it('a snapshot that does not exist: exit 1', async () => {
    const r = await repoCli(['ls', 'deadbeef'], { env: { BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: PASSWORD } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('backplane: snapshot deadbeef not found\n');
  });

  it('--help describes each command and exits 0', async () => {
    const general = ok(await repoCli(['--help']));
    for (const c of ['init', 'backup', 'snapshots', 'ls', 'restore', 'dump', 'forget', 'prune', 'check']) expect(general.text).toContain(`  ${c} `);
    const backupHelp = ok(await repoCli(['backup', '--help']));
    expect(backupHelp.text).toMatch(/^usage: backplane repo backup/);
    expect(backupHelp.text).toContain('--stdin-filename NAME');
  });
});

describe('backplane repo through bin/backplane.js', () => {
  it('is dispatched by the top-level command, with its exit codes', async () => {
    const help = ok(await repoCli(['--help'], { viaBin: true }));
    expect(help.text).toMatch(/^usage: backplane repo <command>/);
    const unknown = await repoCli(['frobnicate'], { viaBin: true });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('backplane: unknown command "frobnicate" (see backplane repo --help)\n');
    const repoDir = join(await tempDir('bp-cli-bin-'), 'repo');
    const env = { BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: PASSWORD };
    ok(await repoCli(['init'], { env, viaBin: true }));
    const wrong = await repoCli(['snapshots'], { env: { ...env, BACKPLANE_REPO_PASSWORD: 'nope' }, viaBin: true });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe('backplane: wrong password or no key found\n');
  });
});

async function listPacks(repoDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(repoDir, 'data'))) for (const f of await readdir(join(repoDir, 'data', d))) out.push(join(repoDir, 'data', d, f));
  return out;
}

async function countPacks(repoDir: string): Promise<number> {
  return (await listPacks(repoDir)).length;
}
