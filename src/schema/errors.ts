import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { builder } from './builder.ts';

/** Every code from the domain catalog, as a GraphQL enum. */
export const ErrorCodeEnum = builder.enumType('ErrorCode', { values: Object.values(ErrorCode) });

export const ErrorInterface = builder.interfaceRef<Error & { code: string }>('Error').implement({
  description: 'Something the caller can act on; `code` is stable, `message` is for people.',
  fields: (t) => ({
    message: t.exposeString('message'),
    code: t.field({ type: ErrorCodeEnum, resolve: (e) => e.code as ErrorCode }),
  }),
});

const FieldError = builder.objectRef<{ path: string[]; message: string }>('FieldError').implement({
  description: 'One invalid input field',
  fields: (t) => ({
    path: t.exposeStringList('path', { description: 'Path of the field in the arguments, e.g. ["input", "name"]' }),
    message: t.exposeString('message'),
  }),
});

builder.objectType(ValidationError, {
  name: 'ValidationError',
  interfaces: [ErrorInterface],
  isTypeOf: (e) => e instanceof ValidationError,
  fields: (t) => ({ fields: t.field({ type: [FieldError], resolve: (e) => e.fields }) }),
});

builder.objectType(NotFoundError, {
  name: 'NotFoundError',
  interfaces: [ErrorInterface],
  isTypeOf: (e) => e instanceof NotFoundError,
});

builder.objectType(ConflictError, {
  name: 'ConflictError',
  interfaces: [ErrorInterface],
  isTypeOf: (e) => e instanceof ConflictError,
});

/** Error result types for mutations, by what they can fail with. */
export const inputErrors = [ValidationError];
export const lookupErrors = [ValidationError, NotFoundError];
export const allErrors = [ValidationError, NotFoundError, ConflictError];
