import { GraphQLError } from 'graphql';
import type { Viewer } from '../services/viewer.ts';
import type { Context } from './builder.ts';

/** The authenticated viewer; scope-auth has already rejected anonymous callers on every field that calls this. */
export function viewerOf(ctx: Context): Viewer {
  if (!ctx.viewer) throw new GraphQLError('Authentication required', { extensions: { code: 'UNAUTHENTICATED' } });
  return ctx.viewer;
}
