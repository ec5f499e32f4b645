/**
 * The Idempotency-Key header names one piece of work. Mutations that start work read it when
 * their input has no idempotencyKey, so a request that would start several with it (a batch, or
 * several such fields in one operation) is refused before anything runs: which one the key
 * belonged to would depend on execution order, and a client that forms its batches differently
 * on a retry would get another operation's result back, or a conflict.
 */
import { GraphQLError, Kind, getNamedType, isInputObjectType, parse, type DocumentNode, type GraphQLSchema, type SelectionSetNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/** Mutation fields whose `input` takes an idempotencyKey. */
function keyedMutations(schema: GraphQLSchema): Set<string> {
  const out = new Set<string>();
  for (const field of Object.values(schema.getMutationType()?.getFields() ?? {})) {
    const input = field.args.find((a) => a.name === 'input');
    const type = input && getNamedType(input.type);
    if (isInputObjectType(type) && type.getFields().idempotencyKey) out.add(field.name);
  }
  return out;
}

/** How many keyed mutation fields the operation a request runs selects (0 when it cannot tell). */
function keyedFieldsIn(query: string | undefined, operationName: string | undefined, keyed: Set<string>): number {
  if (!query) return 0;
  let doc: DocumentNode;
  try {
    doc = parse(query);
  } catch {
    return 0; // yoga reports the syntax error itself
  }
  const operations = doc.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const op = operationName ? operations.find((o) => o.name?.value === operationName) : operations.length === 1 ? operations[0] : undefined;
  if (!op || op.operation !== 'mutation') return 0;
  const fragments = new Map(doc.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d.selectionSet] as const] : [])));
  const seen = new Set<string>();
  const count = (set: SelectionSetNode): number => {
    let n = 0;
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) n += keyed.has(s.name.value) ? 1 : 0;
      else if (s.kind === Kind.INLINE_FRAGMENT) n += count(s.selectionSet);
      else if (!seen.has(s.name.value) && fragments.has(s.name.value)) {
        seen.add(s.name.value);
        n += count(fragments.get(s.name.value)!);
      }
    }
    return n;
  };
  return count(op.selectionSet);
}

/** Refuses, with 400 and code BAD_REQUEST, a request whose Idempotency-Key header would serve several mutations. */
export function oneMutationPerIdempotencyHeader(schema: GraphQLSchema): Plugin {
  const keyed = keyedMutations(schema);
  return {
    onRequestParse: ({ request }) => {
      if (!request.headers.get('idempotency-key')) return;
      return {
        onRequestParseDone: ({ requestParserResult }) => {
          const all = Array.isArray(requestParserResult) ? requestParserResult : [requestParserResult];
          const n = all.reduce((sum, p) => sum + keyedFieldsIn(p.query, p.operationName, keyed), 0);
          if (n > 1) {
            throw new GraphQLError(`The Idempotency-Key header names one mutation, but this request has ${n} that start work; give each its own idempotencyKey in its input instead`, {
              extensions: { code: 'BAD_REQUEST', http: { status: 400 } },
            });
          }
        },
      };
    },
  };
}
