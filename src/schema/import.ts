import { GraphQLError } from 'graphql';
import { ErrorCode, ValidationError } from '../domain/errors.ts';
import { importDump } from '../services/imports.ts';
import { builder, type Context } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { OperationStarted } from './operation.ts';
import { viewerOf } from './viewer-of.ts';

builder.scalarType('Upload', {
  description:
    'A file sent with the request as a GraphQL multipart request (an `operations` field, a `map` field, then the file; the variable itself null). Streamed to disk, at most IMPORT_MAX_BYTES.',
  serialize: () => {
    throw new GraphQLError('Upload is an input only');
  },
  parseValue: (v) => {
    // The multipart receiver (app/multipart-upload.ts) put a placeholder here; anything else was not uploaded.
    if (typeof v !== 'string') throw new GraphQLError('Upload must be sent as a file in a multipart request');
    return v;
  },
});

const ImportDumpInput = builder.inputType('ImportDumpInput', {
  description:
    'One source: `file` (a multipart upload), `url` (https; fetched by the job), or `destinationId` with `key` (a file beside the repository on one of your destinations). Plain SQL, pg_dump custom or tar format, raw, gzip or zstd: told by the content.',
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    file: t.field({ type: 'Upload' }),
    url: t.string(),
    destinationId: t.id(),
    key: t.string({ description: "The file's key under the destination's root (S3: under its prefix)" }),
    createSafetySnapshot: t.boolean({ defaultValue: true }),
    idempotencyKey: t.string(),
  }),
});

const ImportDumpPayload = builder.objectRef<{ operationId: string; restoreLogId: string; snapshotId: string }>('ImportDumpPayload').implement({
  description: 'The import started: its operation, the RestoreLog it is recorded as, and the IMPORT snapshot it will leave (CREATING until it is taken)',
  interfaces: [OperationStarted],
  fields: (t) => ({
    restoreLog: t.prismaField({ type: 'RestoreLog', resolve: (q, p, _a, ctx) => ctx.deps.db.restoreLog.findUniqueOrThrow({ ...q, where: { id: p.restoreLogId } }) }),
    snapshot: t.prismaField({ type: 'Snapshot', resolve: (q, p, _a, ctx) => ctx.deps.db.snapshot.findUniqueOrThrow({ ...q, where: { id: p.snapshotId } }) }),
  }),
});

function uploadOf(ctx: Context, placeholder: string | null | undefined) {
  if (placeholder == null) return null;
  const upload = ctx.uploads?.get(placeholder);
  if (!upload) throw ValidationError.field(['input', 'file'], 'send the file as a GraphQL multipart request', ErrorCode.VALIDATION_FAILED);
  return upload;
}

builder.mutationFields((t) => ({
  importDump: t.field({
    type: ImportDumpPayload,
    authScopes: { write: true },
    description:
      'Restores a dump into an environment atomically, like restoreSnapshot: a safety snapshot first, the dump loaded beside the live database and swapped in, and an IMPORT snapshot of what was imported. A failure (typed: operation.errorCode) leaves the environment as it was.',
    errors: { types: allErrors, directResult: true, union: { name: 'ImportDumpResult' } },
    args: { input: t.arg({ type: ImportDumpInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      importDump(ctx.deps, viewerOf(ctx), {
        environmentId: parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']),
        upload: uploadOf(ctx, input.file),
        url: input.url,
        destinationId: input.destinationId ? parseId(String(input.destinationId), 'Destination', ['input', 'destinationId']) : null,
        key: input.key,
        createSafetySnapshot: input.createSafetySnapshot ?? true,
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null,
      }),
  }),
}));
