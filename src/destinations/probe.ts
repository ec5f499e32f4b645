/**
 * Probe: proves a destination works by writing, reading, listing and deleting one small object
 * beside the repository (never inside `data/`, `keys/`… where restic would try to read it), and
 * times each step. A failure says which of the three things people get wrong it was: a wrong
 * key (AUTH), a missing bucket (NO_BUCKET) or an endpoint nobody answers at (UNREACHABLE).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { BackendAccessError, type Backend } from './backend.ts';
import { LocalBackend } from './local.ts';
import { S3Backend } from './s3.ts';
import { DEFAULT_RETRY_POLICY, withRetries } from './s3-retry.ts';

export type ProbeStepName = 'WRITE' | 'READ' | 'LIST' | 'DELETE';
export type ProbeErrorKind = BackendAccessError['kind'];

export interface ProbeStep {
  step: ProbeStepName;
  ok: boolean;
  latencyMs: number;
  error?: string;
}

export interface ProbeResult {
  ok: boolean;
  steps: ProbeStep[];
  /** The first failure's kind and a sentence a person can act on. */
  errorKind?: ProbeErrorKind;
  error?: string;
}

const PROBE_PREFIX = 'backplane-probe-';

/** What each kind of failure means, for people. */
export function explainAccessError(err: unknown): { kind: ProbeErrorKind; message: string } {
  if (err instanceof BackendAccessError) {
    switch (err.kind) {
      case 'AUTH':
        return { kind: 'AUTH', message: `The storage refused the credentials: check the access key id and secret (${err.message})` };
      case 'NO_BUCKET':
        return { kind: 'NO_BUCKET', message: `The bucket does not exist: create it or correct its name (${err.message})` };
      case 'UNREACHABLE':
        return { kind: 'UNREACHABLE', message: `Nothing answers at the endpoint: check the URL, DNS and firewall (${err.message})` };
      default:
        return { kind: 'IO', message: err.message };
    }
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EPERM') return { kind: 'AUTH', message: `No permission to write the directory: ${(err as Error).message}` };
  if (code === 'ENOENT') return { kind: 'NO_BUCKET', message: `The directory does not exist: ${(err as Error).message}` };
  return { kind: 'IO', message: (err as Error)?.message ?? String(err) };
}

interface ProbeOps {
  write(name: string, body: Buffer): Promise<void>;
  read(name: string): Promise<Buffer>;
  list(): Promise<string[]>;
  remove(name: string): Promise<void>;
}

function s3Ops(b: S3Backend, signal?: AbortSignal): ProbeOps {
  const key = (name: string) => `${b.prefix ? `${b.prefix}/` : ''}${name}`;
  const ctx = (what: string) => ({ what, location: b.location, bucket: b.bucket, policy: DEFAULT_RETRY_POLICY, signal });
  const opt = { abortSignal: signal };
  return {
    write: async (name, body) => {
      await withRetries(ctx(`write ${name}`), () => b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: key(name), Body: body, ContentLength: body.length }), opt));
    },
    read: (name) =>
      withRetries(ctx(`read ${name}`), async () => {
        const res = await b.client.send(new GetObjectCommand({ Bucket: b.bucket, Key: key(name) }), opt);
        return Buffer.from(await res.Body!.transformToByteArray());
      }),
    list: async () => {
      const res = await withRetries(ctx('list'), () => b.client.send(new ListObjectsV2Command({ Bucket: b.bucket, Prefix: key(PROBE_PREFIX) }), opt));
      return (res.Contents ?? []).map((o) => o.Key!.slice(key('').length));
    },
    remove: async (name) => {
      await withRetries(ctx(`delete ${name}`), () => b.client.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: key(name) }), opt));
    },
  };
}

function localOps(b: LocalBackend): ProbeOps {
  return {
    // The repository directory is made on first use, like `restic init`; the probe may be first.
    write: async (name, body) => {
      await mkdir(b.root, { recursive: true });
      await writeFile(join(b.root, name), body);
    },
    read: (name) => readFile(join(b.root, name)),
    list: async () => (await readdir(b.root)).filter((n) => n.startsWith(PROBE_PREFIX)),
    remove: (name) => rm(join(b.root, name), { force: true }),
  };
}

/** Writes, reads, lists and deletes a probe object; stops at the first failing step. */
export async function probeBackend(backend: Backend, signal?: AbortSignal): Promise<ProbeResult> {
  const ops = backend instanceof S3Backend ? s3Ops(backend, signal) : backend instanceof LocalBackend ? localOps(backend) : null;
  if (!ops) throw new TypeError(`no probe for ${backend.location}`);
  const name = `${PROBE_PREFIX}${randomBytes(8).toString('hex')}`;
  const body = randomBytes(1024);
  const steps: ProbeStep[] = [];
  const run = async (step: ProbeStepName, fn: () => Promise<void>): Promise<boolean> => {
    const started = performance.now();
    try {
      await fn();
      steps.push({ step, ok: true, latencyMs: Math.round(performance.now() - started) });
      return true;
    } catch (err) {
      const { kind, message } = explainAccessError(err);
      steps.push({ step, ok: false, latencyMs: Math.round(performance.now() - started), error: message });
      failure ??= { kind, message };
      return false;
    }
  };
  let failure: { kind: ProbeErrorKind; message: string } | undefined;
  const written = await run('WRITE', () => ops.write(name, body));
  if (written) {
    await run('READ', async () => {
      const back = await ops.read(name);
      if (!back.equals(body)) throw new BackendAccessError('IO', 'the object read back differs from the one written');
    });
    await run('LIST', async () => {
      if (!(await ops.list()).includes(name)) throw new BackendAccessError('IO', 'the object written does not appear in the listing');
    });
    await run('DELETE', () => ops.remove(name));
  }
  return { ok: !failure, steps, ...(failure ? { errorKind: failure.kind, error: failure.message } : {}) };
}
