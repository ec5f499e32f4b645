import { lexicographicSortSchema, printSchema } from 'graphql';
import { schema } from './index.ts';

/** The SDL committed as schema.graphql: sorted, so the file changes only when the schema does. */
export function printedSchema(): string {
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
