// Runs `prisma generate` without the native schema engine: generate never executes it, but the
// CLI insists on a file at PRISMA_SCHEMA_ENGINE_BINARY, and downloading the real one is not
// possible on machines without outside network. Migrations use the WebAssembly engine instead
// (src/db/migrate.ts).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const cli = path.join(root, 'node_modules', 'prisma', 'build', 'index.js');
if (!existsSync(cli)) {
  // Production installs without devDependencies use the committed client as generated.
  console.log('prisma CLI not installed; skipping generate');
  process.exit(0);
}
const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? process.execPath,
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  CHECKPOINT_DISABLE: '1',
};
const r = spawnSync(process.execPath, [cli, 'generate'], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
