import { GraphQLError } from 'graphql';
import { builder } from './builder.ts';

builder.scalarType('DateTime', {
  description: 'An ISO-8601 timestamp with time zone, e.g. 2026-11-23T18:45:00.000Z',
  serialize: (d) => (d instanceof Date ? d.toISOString() : new Date(d as string).toISOString()),
  parseValue: (v) => {
    const d = typeof v === 'string' ? new Date(v) : null;
    if (!d || Number.isNaN(d.getTime())) throw new GraphQLError('DateTime must be an ISO-8601 string');
    return d;
  },
});

// Byte counts exceed 2^53 in principle; they travel as decimal strings so no client loses precision.
builder.scalarType('BigInt', {
  description: 'A whole number sent as a decimal string (byte counts may exceed 2^53)',
  serialize: (v) => BigInt(v as bigint | number).toString(),
  parseValue: (v) => {
    if (typeof v !== 'string' && typeof v !== 'number') throw new GraphQLError('BigInt must be a decimal string');
    try {
      return BigInt(v);
    } catch {
      throw new GraphQLError('BigInt must be a decimal string');
    }
  },
});

builder.scalarType('JSON', {
  description: 'Arbitrary JSON',
  serialize: (v) => v,
  parseValue: (v) => v,
});
