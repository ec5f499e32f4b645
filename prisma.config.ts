import path from 'node:path';
import { defineConfig } from 'prisma/config';

// The CLI is used only for `prisma generate`; migrations run through the WebAssembly engine
// (src/db/migrate.ts), so no datasource url is needed here.
export default defineConfig({
  schema: path.join('prisma', 'schema.prisma'),
  migrations: { path: path.join('prisma', 'migrations') },
});
