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
const config: CodegenConfig = {
  schema: 'schema.graphql',
  // ESM imports with extensions, as the rest of the project writes them.
  emitLegacyCommonJSImports: false,
  generates: {
    'test/generated/': { ...typed, documents: ['test/operations/**/*.graphql'] },
    'src/cli/client/generated/': { ...typed, documents: ['src/cli/client/operations/**/*.graphql'] },
    // The web console's documents, committed for the same reason (the build bundles them).
    'src/console/generated/': { ...typed, documents: ['src/console/operations/**/*.graphql'] },
  },
};

export default config;
