// The schema is the sum of its domain modules; importing one registers its types and fields.
import { ACCESS } from './access.ts';
import { builder } from './builder.ts';
import './scalars.ts';
import './errors.ts';
import './node.ts';
import './viewer.ts';
import './project.ts';
import './environment.ts';
import './api-key.ts';
import './operation.ts';
import './snapshot.ts';
import './restore.ts';
import './pitr-restore.ts';
import './drill.ts';
import './import.ts';
import './destination.ts';
import './snapshot-copies.ts';
import './schedule.ts';
import './settings.ts';
import './alert.ts';
import './audit.ts';
import './pitr.ts';
import './recovery-instance.ts';

export const schema = builder.toSchema({ sortSchema: true });

// Every Prisma-backed type must carry its access rule (see access.ts): a type added without one
// fails here, when the schema is built, before any request can reach it.
for (const type of Object.values(schema.getTypeMap())) {
  const model = type.extensions?.pothosPrismaModel as string | undefined;
  if (!model) continue;
  const authScopes = (builder.configStore.getTypeConfig(type.name).pothosOptions as { authScopes?: { accessModel?: string } }).authScopes;
  if (!(model in ACCESS) || authScopes?.accessModel !== model) {
    throw new Error(`GraphQL type ${type.name} (Prisma model ${model}) has no access rule: add one to ACCESS in src/schema/access.ts and declare authScopes: typeAccess('${model}')`);
  }
}
