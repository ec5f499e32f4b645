import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import type { GraphQLFieldResolver } from 'graphql';
import { ValidationError, type FieldIssue } from '../domain/errors.ts';

/**
 * Rules every string argument obeys, whatever field it belongs to, checked once here rather than
 * in each zod schema: PostgreSQL refuses a NUL character in text, so one that reached a service
 * would fail its query as an internal error instead of being refused as input. Registered after
 * the errors plugin, so a field with typed results answers a ValidationError result, and any other
 * field an error with the VALIDATION_FAILED code (build-app's maskError).
 */
export function stringArgumentIssues(args: Record<string, unknown>): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const visit = (value: unknown, path: string[]) => {
    if (typeof value === 'string') {
      if (value.includes('\0')) issues.push({ path, message: 'must not contain NUL characters' });
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => visit(v, [...path, String(i)]));
    } else if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
      // Input objects, and JSON scalars (keys are strings PostgreSQL stores too).
      for (const [k, v] of Object.entries(value)) {
        if (k.includes('\0')) issues.push({ path: [...path, k], message: 'must not contain NUL characters in a key' });
        visit(v, [...path, k]);
      }
    }
  };
  visit(args, []);
  return issues;
}

function guarded<T extends GraphQLFieldResolver<unknown, object, object> | undefined>(fn: T, fieldConfig: PothosOutputFieldConfig<SchemaTypes>): T {
  if (!fn || Object.keys(fieldConfig.args).length === 0) return fn;
  const inner = fn as GraphQLFieldResolver<unknown, object, object>;
  return ((parent, args, ctx, info) => {
    const issues = stringArgumentIssues(args as Record<string, unknown>);
    if (issues.length) throw new ValidationError(issues);
    return inner(parent, args, ctx, info);
  }) as T;
}

export class InputGuardPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override wrapResolve(resolver: GraphQLFieldResolver<unknown, Types['Context'], object>, fieldConfig: PothosOutputFieldConfig<Types>) {
    return guarded(resolver, fieldConfig as never);
  }

  override wrapSubscribe(subscribe: GraphQLFieldResolver<unknown, Types['Context'], object> | undefined, fieldConfig: PothosOutputFieldConfig<Types>) {
    return guarded(subscribe, fieldConfig as never);
  }
}

declare global {
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      inputGuard: InputGuardPlugin<Types>;
    }
  }
}

SchemaBuilder.registerPlugin('inputGuard', InputGuardPlugin);

export default 'inputGuard' as const;
