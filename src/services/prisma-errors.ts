import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { withArticleCapitalized } from '../domain/text.ts';

/** Turns a unique-constraint violation into NAME_TAKEN; rethrows anything else with its cause. */
export function nameTakenOr(err: unknown, what: string): never {
  if (typeof err === 'object' && err !== null && (err as { code?: string }).code === 'P2002') {
    throw new ConflictError(ErrorCode.NAME_TAKEN, `${withArticleCapitalized(what)} with this name already exists`);
  }
  throw err;
}
