import { copySnapshot } from '../services/copies.ts';
import { verifySnapshot } from '../services/verify.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { SnapshotOperationPayload } from './snapshot.ts';
import { viewerOf } from './viewer-of.ts';

// Work on the copies of a snapshot: adding one to another destination, verifying them.

const idempotencyKeyField = (t: Parameters<Parameters<typeof builder.inputType>[1]['fields']>[0]) =>
  t.string({ description: 'Same key and input: the same operation back. Also read from the Idempotency-Key header.' });
const CopySnapshotInput = builder.inputType('CopySnapshotInput', {
  fields: (t) => ({ snapshotId: t.id({ required: true }), destinationId: t.id({ required: true }), idempotencyKey: idempotencyKeyField(t) }),
});
const VerifySnapshotInput = builder.inputType('VerifySnapshotInput', {
  fields: (t) => ({
    snapshotId: t.id({ required: true }),
    readData: t.boolean({ defaultValue: false, description: 'Also read and check every data blob (reads the whole snapshot)' }),
    idempotencyKey: idempotencyKeyField(t),
  }),
});

builder.mutationFields((t) => ({
  copySnapshot: t.field({
    type: SnapshotOperationPayload,
    authScopes: { write: true },
    description: 'Adds a copy of a ready snapshot to another destination (a job); only blobs it lacks are sent.',
    errors: { types: allErrors, directResult: true, union: { name: 'CopySnapshotResult' } },
    args: { input: t.arg({ type: CopySnapshotInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const snapshotId = parseId(String(input.snapshotId), 'Snapshot', ['input', 'snapshotId']);
      const destinationId = parseId(String(input.destinationId), 'Destination', ['input', 'destinationId']);
      const started = await copySnapshot(ctx.deps, viewerOf(ctx), snapshotId, destinationId, { idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null });
      return { ...started, snapshotId };
    },
  }),
  verifySnapshot: t.field({
    type: SnapshotOperationPayload,
    authScopes: { write: true },
    description: "Checks a snapshot's trees and blobs on every destination that holds it (a job); problems raise a VERIFICATION_FAILED alert.",
    errors: { types: allErrors, directResult: true, union: { name: 'VerifySnapshotResult' } },
    args: { input: t.arg({ type: VerifySnapshotInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const snapshotId = parseId(String(input.snapshotId), 'Snapshot', ['input', 'snapshotId']);
      const started = await verifySnapshot(ctx.deps, viewerOf(ctx), { snapshotId, readData: input.readData ?? false, idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null });
      return { ...started, snapshotId };
    },
  }),
}));
