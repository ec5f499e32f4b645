import type { CodegenConfig } from '@graphql-codegen/cli';

const typed = {
  preset: 'client',
  presetConfig: { fragmentMasking: false },
  config: {
    scalars: { DateTime: 'string', BigInt: 'string', JSON: 'unknown' },
    enumsAsTypes: true,
    useTypeImports: true,
  },
} as const;

// Typed documents: each .graphql file under test/operations becomes a TypedDocumentNode in
// test/generated/graphql.ts (made before the tests run); the client command line's documents go to
// src/cli/client/generated (and the web console's to src/console/generated), which is committed because the build needs it and a production install
// has no codegen.
// CODEGEN_ONLY=<target> limits a run to one target: `pretest` makes only test/generated/ (not
// committed), so the committed targets are never rewritten before the test that compares them
// with what codegen makes (test/cli/client-generated.test.ts) can judge them.
export const targets: CodegenConfig['generates'] = {
  'test/generated/': { ...typed, documents: ['test/operations/**/*.graphql'] },
  'src/cli/client/generated/': { ...typed, documents: ['src/cli/client/operations/**/*.graphql'] },
  // The web console's documents, committed for the same reason (the build bundles them).
  'src/console/generated/': { ...typed, documents: ['src/console/operations/**/*.graphql'] },
};
const only = process.env.CODEGEN_ONLY;
if (only && !targets[only]) throw new Error(`CODEGEN_ONLY=${only}: not one of ${Object.keys(targets).join(', ')}`);

const config: CodegenConfig = {
  schema: 'schema.graphql',
  // ESM imports with extensions, as the rest of the project writes them.
  emitLegacyCommonJSImports: false,
  generates: only ? { [only]: targets[only]! } : targets,
};

export default config;
