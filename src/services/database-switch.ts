import { z } from 'zod';
import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { publishInTransaction } from '../events/bus.ts';
import { redactUrl } from '../app/secrets.ts';
import { siblingUrl } from '../sources/connection.ts';
import { MAX_IDENTIFIER_BYTES } from '../sources/postgres.ts';
import { withAdmin } from '../sources/pg-admin.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, getEnvironment } from './environments.ts';
import type { Viewer } from './viewer.ts';

/**
 * Points an environment at another database of the same server (a clone a restore to a point in
 * time made, say), keeping the name it leaves in `previousDatabaseName`, so switching to that
 * name switches back. Only the URL's database changes: server, role and password stay.
 */

export const switchDatabaseInput = z.object({
  environmentId: z.string(),
  databaseName: z.string().min(1).refine((n) => Buffer.byteLength(n) <= MAX_IDENTIFIER_BYTES, `at most ${MAX_IDENTIFIER_BYTES} bytes`),
});

export async function switchDatabase(deps: Deps, viewer: Viewer, raw: z.input<typeof switchDatabaseInput>): Promise<string> {
  const input = parseInput(switchDatabaseInput, raw);
  const env = await getEnvironment(deps, viewer, input.environmentId);
  if (env.databaseName === input.databaseName) throw ValidationError.field(['input', 'databaseName'], `the environment already uses ${input.databaseName}`);
  const url = await environmentDatabaseUrl(deps, env.id);
  const exists = await withAdmin(url, [], async (c) => ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [input.databaseName])).rowCount ?? 0) > 0);
  if (!exists) throw ValidationError.field(['input', 'databaseName'], `no database named ${input.databaseName} on the environment's server`);
  const next = siblingUrl(url, input.databaseName);
  await deps.db.$transaction(async (tx) => {
    // A snapshot or restore running would read or write one database and record another.
    const running = await tx.operation.findFirst({ where: { environmentId: env.id, type: { in: ['SNAPSHOT', 'RESTORE'] }, status: { in: ['QUEUED', 'RUNNING'] } } });
    if (running) throw new ConflictError(ErrorCode.OPERATION_RUNNING, 'A snapshot or restore of this environment is queued or running: switch once it ends');
    await tx.environment.update({
      where: { id: env.id },
      data: { databaseUrlEncrypted: deps.secrets.seal(next), databaseUrlRedacted: redactUrl(next), databaseName: input.databaseName, previousDatabaseName: env.databaseName },
    });
    await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'ENVIRONMENT_UPDATED', environmentId: env.id, subjectId: env.id });
  });
  return env.id;
}
