/**
 * A disposable S3-compatible server for tests: s3rver on a random free port of 127.0.0.1,
 * storing into its own temporary directory, with the requested buckets already made.
 *
 * It runs in a child process started with `--openssl-legacy-provider`: s3rver makes its
 * ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only offers from the legacy
 * provider; without it every listing past one page fails with 500 InternalError.
 *
 * What s3rver checks, and what it does not (s3rver 3.7.1): the access key id must be `S3RVER`
 * (anything else is answered 403 InvalidAccessKeyId), but SigV4 signatures are not verified,
 * so a wrong *secret* with the right key id is accepted. PutObject writes straight into the
 * object file, so unlike real S3 an interrupted single PUT can leave a partial object behind.
 * AbortMultipartUpload is not implemented (405 MethodNotAllowed).
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** The only credentials s3rver knows. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface StartedS3rver {
  /** e.g. `http://127.0.0.1:43121` (`https://` with `tls`) */
  endpoint: string;
  /** With `tls`: the self-signed certificate (PEM) to trust. */
  ca?: string;
  port: number;
  /** Where s3rver keeps its files: `<directory>/<bucket>/<key>._S3rver_object`. */
  directory: string;
  stop(): Promise<void>;
}

const projectRoot = fileURLToPath(new URL('../..', import.meta.url));

// Runs in the child; prints the bound port as its first line, closes on stdin EOF.
const childProgram = `
const S3rver = require('s3rver');
const options = JSON.parse(process.argv[1]);
const server = new S3rver(options);
server.run().then((address) => {
  process.stdout.write(JSON.stringify({ port: address.port }) + '\\n');
});
process.stdin.resume();
process.stdin.on('end', () => {
  server.httpServer.closeAllConnections();
  server.close().then(() => process.exit(0));
});
`;

export interface S3rverOptions {
  buckets?: string[];
  /**
   * Serve HTTPS with a fresh self-signed certificate for 127.0.0.1. Needed for restic: over
   * plain HTTP its minio-go client sends `aws-chunked` (streaming SigV4) bodies, which s3rver
   * stores verbatim, chunk signatures and all.
   */
  tls?: boolean;
}

/** Starts s3rver with the given buckets; `stop()` closes it and deletes its directory. */
export async function startS3rver(opts: S3rverOptions = {}): Promise<StartedS3rver> {
  const directory = await mkdtemp(join(tmpdir(), 'bp-s3rver-'));
  const tls = opts.tls ? await selfSignedCertificate(directory) : undefined;
  const options = {
    ...tls,
    // The store lives one level down so the certificate files are not mistaken for a bucket.
    directory: join(directory, 'store'),
    address: '127.0.0.1',
    port: 0,
    silent: true,
    // Path-style only: virtual-host buckets would need DNS for <bucket>.127.0.0.1.
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  };
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '-e', childProgram, JSON.stringify(options)],
    { cwd: projectRoot, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    once(lines, 'line').then(([line]) => String(line)),
    exited.then(([code]) => {
      throw new Error(`s3rver exited before listening (code ${code})`);
    }),
  ]);
  const { port } = JSON.parse(first) as { port: number };
  let stopping: Promise<void> | undefined;
  return {
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    ca: tls?.cert,
    port,
    directory: options.directory,
    stop() {
      stopping ??= (async () => {
        child.stdin.end();
        await exited;
        await rm(directory, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

async function selfSignedCertificate(directory: string): Promise<{ key: string; cert: string }> {
  const keyPath = join(directory, 'key.pem');
  const certPath = join(directory, 'cert.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', keyPath, '-out', certPath,
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ]);
  return { key: await readFile(keyPath, 'utf8'), cert: await readFile(certPath, 'utf8') };
}
