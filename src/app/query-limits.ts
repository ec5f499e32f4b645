/**
 * Limits on what one GraphQL operation may ask for, checked before anything runs: tokens (while
 * parsing), depth and aliases (while validating), cost (before executing, variables known). Each
 * refusal is a GraphQLError with its own `extensions.code` from `QueryLimitCode` and the limit in
 * `extensions.limit`.
 *
 * Cost is the most objects an operation can return, each page full: every object field counts 1
 * for each time it can appear; a connection (`…Connection` with `first`/`last`) counts 1 and
 * multiplies what is under its `edges`/`nodes` by its page size (`first` or `last`, a variable's
 * value included, 20 when absent, at most 100 as the server serves no more); any other list counts
 * `UNPAGED_LIST_SIZE` elements (`nodes(ids:)` the number of ids). Scalars, edges and page info are
 * free: the token limit bounds how many fields a query names. A batch is checked per operation.
 */
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import {
  GraphQLError,
  getNamedType,
  getNullableType,
  isCompositeType,
  isListType,
  Kind,
  type ExecutionArgs,
  type FragmentDefinitionNode,
  getOperationAST,
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type SelectionSetNode,
  type ValidationContext,
  type ValueNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { QueryLimitCode } from '../domain/errors.ts';

/** The page size of a connection without `first`/`last`, and the most it serves (Pothos relay defaults). */
const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 100;
/** Assumed length of a list that takes no page size (copies of a snapshot, destinations of an environment…). */
const UNPAGED_LIST_SIZE = 10;

export interface QueryLimits {
  maxDepth: number;
  maxAliases: number;
  maxCost: number;
  maxTokens: number;
}

function limitError(code: QueryLimitCode, message: string, limit: number): GraphQLError {
  return new GraphQLError(message, { extensions: { code, limit } });
}

/** graphql-armor words its refusals as syntax errors; keep its count, not its wording. */
const armorFound = (err: GraphQLError) => /found (\d+)/.exec(err.message)?.[1];

function report(ctx: ValidationContext | null, err: GraphQLError): void {
  if (!ctx) throw err;
  ctx.reportError(err);
}

/** The envelop plugins enforcing the limits, in the order they apply. */
export function queryLimitPlugins(limits: QueryLimits): Plugin[] {
  return [
    maxTokensPlugin({
      n: limits.maxTokens,
      propagateOnRejection: false,
      onReject: [
        () => {
          throw limitError(QueryLimitCode.QUERY_TOO_LONG, `The query has more than ${limits.maxTokens} tokens`, limits.maxTokens);
        },
      ],
    }),
    maxDepthPlugin({
      n: limits.maxDepth,
      flattenFragments: true,
      propagateOnRejection: false,
      onReject: [(ctx, err) => report(ctx, limitError(QueryLimitCode.QUERY_TOO_DEEP, `The query is ${armorFound(err) ?? 'too many'} levels deep; the limit is ${limits.maxDepth}`, limits.maxDepth))],
    }),
    maxAliasesPlugin({
      n: limits.maxAliases,
      propagateOnRejection: false,
      onReject: [(ctx, err) => report(ctx, limitError(QueryLimitCode.QUERY_TOO_MANY_ALIASES, `The query uses ${armorFound(err) ?? 'too many'} aliases; the limit is ${limits.maxAliases}`, limits.maxAliases))],
    }),
    costLimitPlugin(limits.maxCost),
  ];
}

/**
 * Checked when the operation is about to run, not in validation: page sizes may come from
 * variables, and yoga caches a document's validation result whatever the variables.
 */
function costLimitPlugin(maxCost: number): Plugin {
  function check(args: ExecutionArgs): GraphQLError | undefined {
    const cost = queryCost(args);
    if (cost <= maxCost) return undefined;
    return limitError(
      QueryLimitCode.QUERY_TOO_COMPLEX,
      `The query could return up to ${cost} objects; the limit is ${maxCost}. Ask for smaller pages (first/last) or fewer nested lists`,
      maxCost,
    );
  }
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const err = check(args);
      if (err) setResultAndStopExecution({ errors: [err] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const err = check(args);
      if (err) setResultAndStopExecution({ errors: [err] });
    },
  };
}

/** The cost of the operation `args` would run, by the model in this file's comment. */
export function queryCost(args: Pick<ExecutionArgs, 'schema' | 'document' | 'operationName' | 'variableValues'>): number {
  const op = getOperationAST(args.document, args.operationName);
  const root = op && args.schema.getRootType(op.operation);
  if (!op || !root) return 0;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of args.document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  return new CostCounter(args.schema, fragments, (args.variableValues ?? {}) as Record<string, unknown>).selections(op.selectionSet, root, 1, undefined);
}

const isWrapper = (t: GraphQLNamedType) => t.name === 'PageInfo' || t.name.endsWith('Edge');
const isConnection = (t: GraphQLNamedType, field: GraphQLField<unknown, unknown>) =>
  t.name.endsWith('Connection') && field.args.some((a) => a.name === 'first' || a.name === 'last');

class CostCounter {
  private readonly inFragment = new Set<string>();
  constructor(
    private readonly schema: GraphQLSchema,
    private readonly fragments: Map<string, FragmentDefinitionNode>,
    private readonly variables: Record<string, unknown>,
  ) {}

  /** `times`: how often this selection set can appear; `page`: the page size when it is a connection's. */
  selections(set: SelectionSetNode, type: GraphQLCompositeType, times: number, page: number | undefined): number {
    let cost = 0;
    for (const sel of set.selections) {
      if (sel.kind === Kind.INLINE_FRAGMENT) {
        const on = sel.typeCondition ? this.schema.getType(sel.typeCondition.name.value) : type;
        if (on && isCompositeType(on)) cost += this.selections(sel.selectionSet, on, times, page);
      } else if (sel.kind === Kind.FRAGMENT_SPREAD) {
        const fragment = this.fragments.get(sel.name.value);
        // A cycle was refused by validation already; here it only must not recurse forever.
        if (!fragment || this.inFragment.has(sel.name.value)) continue;
        const on = this.schema.getType(fragment.typeCondition.name.value);
        if (!on || !isCompositeType(on)) continue;
        this.inFragment.add(sel.name.value);
        cost += this.selections(fragment.selectionSet, on, times, page);
        this.inFragment.delete(sel.name.value);
      } else {
        if (sel.name.value.startsWith('__') || !('getFields' in type)) continue;
        const field = type.getFields()[sel.name.value];
        if (!field) continue;
        const named = getNamedType(field.type);
        const list = isListType(getNullableType(field.type));
        const connection = isConnection(named, field);
        const count = times * (list ? (page ?? this.listSize(sel.arguments ?? [])) : 1);
        if (isCompositeType(named) && !isWrapper(named)) cost += count;
        if (sel.selectionSet && isCompositeType(named)) {
          const childPage = connection ? this.pageSize(sel.arguments ?? []) : isWrapper(named) ? page : undefined;
          cost += this.selections(sel.selectionSet, named, count, list && !connection ? undefined : childPage);
        }
      }
    }
    return cost;
  }

  private value(node: ValueNode): unknown {
    if (node.kind === Kind.VARIABLE) return this.variables[node.name.value];
    if (node.kind === Kind.INT) return Number(node.value);
    if (node.kind === Kind.LIST) return node.values;
    return undefined;
  }

  /** Rows a connection serves per page: `first` or `last`, else the default, never more than the maximum. */
  private pageSize(args: readonly { name: { value: string }; value: ValueNode }[]): number {
    for (const a of args) {
      if (a.name.value !== 'first' && a.name.value !== 'last') continue;
      const v = this.value(a.value);
      // A variable not given (or not a number) fails later; count it at the most the server serves.
      return typeof v === 'number' && Number.isFinite(v) ? Math.max(0, Math.min(v, MAX_PAGE_SIZE)) : MAX_PAGE_SIZE;
    }
    return DEFAULT_PAGE_SIZE;
  }

  private listSize(args: readonly { name: { value: string }; value: ValueNode }[]): number {
    const ids = args.find((a) => a.name.value === 'ids');
    if (ids) {
      const v = this.value(ids.value);
      if (Array.isArray(v)) return v.length;
    }
    return UNPAGED_LIST_SIZE;
  }
}
