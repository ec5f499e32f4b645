import type { CodegenConfig } from '@graphql-codegen/cli';

// Typed documents for the operations tests (and clients) use: each .graphql file under
// test/operations becomes a TypedDocumentNode in test/generated/graphql.ts.
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['test/operations/**/*.graphql'],
  // ESM imports with extensions, as the rest of the project writes them.
  emitLegacyCommonJSImports: false,
  generates: {
    'test/generated/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        scalars: { DateTime: 'string', BigInt: 'string', JSON: 'unknown' },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
