import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import { ValidationError } from '../domain/errors.ts';
import { withArticle } from '../domain/text.ts';

/**
 * Global ids are Relay's base64("Type:id"). Resolvers decode them here so a malformed id, or an
 * id of another type, is a ValidationError naming the field rather than an opaque failure.
 */
export function parseId(value: string, typename: string, path: string[]): string {
  let decoded: { typename: string; id: string };
  try {
    decoded = decodeGlobalID(value);
  } catch {
    throw ValidationError.field(path, 'is not a valid id');
  }
  if (decoded.typename !== typename) throw ValidationError.field(path, `must be the id of ${withArticle(typename)}, not of ${withArticle(decoded.typename || 'unknown type')}`);
  if (!decoded.id) throw ValidationError.field(path, 'is not a valid id');
  return decoded.id;
}

/** Decodes a list of ids of one type, reporting the index of each bad one. */
export function parseIds(values: readonly string[], typename: string, path: string[]): string[] {
  return values.map((v, i) => parseId(v, typename, [...path, String(i)]));
}

/** Decodes an id of any type, or null when it is not a global id at all. */
export function tryDecodeId(value: string): { typename: string; id: string } | null {
  try {
    const d = decodeGlobalID(value);
    return d.typename && d.id ? d : null;
  } catch {
    return null;
  }
}

export { encodeGlobalID };
