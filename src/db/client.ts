import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { PrismaPg } from '@prisma/adapter-pg';
import type { GetPrismaClientConfig } from '@prisma/client/runtime/client';
import { PrismaClient } from '../generated/prisma/client.ts';

export type Db = PrismaClient;
export { Prisma } from '../generated/prisma/client.ts';

/** A Prisma client over node-postgres (Prisma 7 has no built-in engine: the adapter is the driver). */
export function createDb(databaseUrl: string, opts: { max?: number } = {}): Db {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: opts.max ?? 10 });
  // `__internal` is not in the generated client's option type.
  const options = { adapter, __internal: { configOverride: compilerFromFile } };
  return new PrismaClient(options as { adapter: PrismaPg });
}

/**
 * The generated client imports its query compiler from an ES module whose one export is the
 * WebAssembly as a 4.4 MB base64 string, and V8 keeps both that module's source and the string
 * for the life of the thread: 8.7 MiB of heap per runtime, and `backplane start` has two. The
 * same file decoded here piece by piece leaves only the compiled module behind (and no string
 * of that size as garbage either: an idle thread may not collect it for a long time).
 * `__internal.configOverride` is Prisma's hook for swapping such loaders; the file is the one the
 * generated client names (`importName`, per provider), so a generator change that renames it
 * fails at the first query instead of loading another compiler.
 */
function compilerFromFile(config: GetPrismaClientConfig): GetPrismaClientConfig {
  const wasm = config.compilerWasm;
  if (!wasm) return config;
  const base = wasm.importName.replace(/^\.\//, '').replace(/\.js$/, '');
  const file = `@prisma/client/runtime/${base}.${config.activeProvider}.wasm-base64.mjs`;
  return { ...config, compilerWasm: { ...wasm, getQueryCompilerWasmModule: () => (compilerModules[file] ??= compileBase64Module(file)) } };
}

const compilerModules: Record<string, Promise<WebAssembly.Module>> = {};

async function compileBase64Module(specifier: string): Promise<WebAssembly.Module> {
  const file = createRequire(import.meta.url).resolve(specifier);
  const fh = await open(file);
  try {
    // `const wasm = "<base64>";\nexport { wasm }`, decoded in whole groups of 4 characters.
    const out = Buffer.allocUnsafe(Math.floor(((await fh.stat()).size * 3) / 4));
    const piece = Buffer.allocUnsafe(1 << 16);
    let written = 0;
    let rest = '';
    let state: 'before' | 'in' | 'after' = 'before';
    for (let pos = 0; state !== 'after'; ) {
      const { bytesRead } = await fh.read(piece, 0, piece.length, pos);
      if (!bytesRead) break;
      pos += bytesRead;
      let text = piece.toString('latin1', 0, bytesRead);
      if (state === 'before') {
        const quote = text.indexOf('"');
        if (quote < 0) continue;
        text = text.slice(quote + 1);
        state = 'in';
      }
      const end = text.indexOf('"');
      if (end >= 0) state = 'after';
      text = rest + (end >= 0 ? text.slice(0, end) : text);
      const whole = state === 'after' ? text.length : text.length - (text.length % 4);
      written += out.write(text.slice(0, whole), written, 'base64');
      rest = text.slice(whole);
    }
    if (state !== 'after') throw new Error(`${specifier}: no base64 string found`);
    return await WebAssembly.compile(out.subarray(0, written));
  } finally {
    await fh.close();
  }
}
