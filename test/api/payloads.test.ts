/**
 * Mutations that start work answer in one shape: the operation to watch, through the
 * OperationStarted interface, and the same payload type for the same kind of subject.
 */
import { isInterfaceType, isObjectType, isUnionType, type GraphQLObjectType } from 'graphql';
import { describe, expect, it } from 'vitest';
import { schema } from '../../src/schema/index.ts';

const mutation = schema.getMutationType()!;

/** The payload type of a mutation: its result union's one member that is not an error. */
function payloadOf(field: string): GraphQLObjectType {
  const type = mutation.getFields()[field].type;
  const named = 'ofType' in type ? type.ofType : type;
  if (!isUnionType(named)) throw new Error(`${field} does not return a result union`);
  const payloads = named.getTypes().filter((t) => !t.getInterfaces().some((i) => i.name === 'Error'));
  expect(payloads, field).toHaveLength(1);
  return payloads[0];
}

describe('payloads of mutations that start work', () => {
  it('createSnapshot, runScheduleNow, copySnapshot, verifySnapshot and deleteSnapshot answer with the same SnapshotOperationPayload', () => {
    for (const field of ['createSnapshot', 'runScheduleNow', 'copySnapshot', 'verifySnapshot', 'deleteSnapshot']) {
      const payload = payloadOf(field);
      expect(payload.name, field).toBe('SnapshotOperationPayload');
      expect(Object.keys(payload.getFields()).sort()).toEqual(['operation', 'snapshot']);
    }
  });

  it('every payload that carries an operation implements OperationStarted', () => {
    const started = schema.getType('OperationStarted');
    expect(isInterfaceType(started)).toBe(true);
    const carriers = Object.values(schema.getTypeMap()).filter(
      (t): t is GraphQLObjectType => isObjectType(t) && t.name.endsWith('Payload') && String(t.getFields().operation?.type) === 'Operation!',
    );
    expect(carriers.map((t) => t.name).sort()).toEqual(expect.arrayContaining(['OperationPayload', 'RestorePayload', 'SnapshotOperationPayload']));
    for (const t of carriers) expect(t.getInterfaces().map((i) => i.name), t.name).toContain('OperationStarted');
  });
});
