/**
 * `oncely/effects/dynamodb`: fenced writes to DynamoDB through the `@aws-sdk/lib-dynamodb` document client you
 * already have (an optional peer dependency). The item keeps its highest fence in an attribute, and the write
 * is conditional on it: `attribute_not_exists(fence) OR fence <= :fence`, ANDed with your own condition. The
 * check and the write are one request. A write whose fence is older than the item's is refused with
 * StaleFenceError and writes nothing.
 *
 *   await fencedPut(doc, { TableName: 'orders', Item: { id, status: 'charged' }, fence: once.fence });
 */
import type { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  type PutCommandInput,
  type PutCommandOutput,
  UpdateCommand,
  type UpdateCommandInput,
  type UpdateCommandOutput,
} from '@aws-sdk/lib-dynamodb';
import { staleFence } from '../errors.js';
import { check } from '../validate.js';
import { fenceProblems } from './fence.js';

export { StaleFenceError } from '../errors.js';

/** The fence to write with, and the attribute that holds it. */
export interface FenceInput {
  /** The writer's fence: `once.fence`, `lease.fence`. */
  fence: number;
  /** The item attribute holding its highest fence. @default 'fence' */
  fenceAttribute?: string;
}

/** The placeholders the fence condition adds: a caller's own expressions must not use them. */
const NAME = '#oncelyFence';
const VALUE = ':oncelyFence';
const CONDITION = `(attribute_not_exists(${NAME}) OR ${NAME} <= ${VALUE})`;

type Expressions = Pick<
  PutCommandInput,
  'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'
>;

/** The caller's condition, names and values with the fence's added (validated first). */
function fenced(what: string, input: Expressions & FenceInput): Expressions & { attribute: string } {
  const attribute = input.fenceAttribute ?? 'fence';
  check(
    [
      ...fenceProblems(input.fence),
      ...(typeof attribute === 'string' && attribute !== ''
        ? []
        : ['fenceAttribute must be a non-empty string']),
      ...(input.ExpressionAttributeNames && NAME in input.ExpressionAttributeNames
        ? [`${NAME} is taken`]
        : []),
      ...(input.ExpressionAttributeValues && VALUE in input.ExpressionAttributeValues
        ? [`${VALUE} is taken`]
        : []),
    ],
    what,
  );
  return {
    attribute,
    ConditionExpression: input.ConditionExpression
      ? `(${input.ConditionExpression}) AND ${CONDITION}`
      : CONDITION,
    ExpressionAttributeNames: { ...input.ExpressionAttributeNames, [NAME]: attribute },
    ExpressionAttributeValues: { ...input.ExpressionAttributeValues, [VALUE]: input.fence },
  };
}

/**
 * Puts `Item` with its fence attribute set to `fence`, if the stored item has no fence or one not newer.
 * Throws StaleFenceError when it has a newer one; your own ConditionExpression failing throws DynamoDB's
 * ConditionalCheckFailedException as usual.
 */
export async function fencedPut(
  doc: DynamoDBDocumentClient,
  input: PutCommandInput & FenceInput,
): Promise<PutCommandOutput> {
  const { fence, fenceAttribute: _, ...put } = input;
  const { attribute, ...expressions } = fenced('fencedPut', input);
  const command = new PutCommand({
    ...put,
    ...expressions,
    Item: { ...put.Item, [attribute]: fence },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
  });
  return refusing(doc.send(command), {
    resource: put.TableName ?? '',
    fence,
    attribute,
    ownCondition: Boolean(put.ConditionExpression),
  });
}

/**
 * Applies `UpdateExpression` and sets the fence attribute to `fence`, if the stored item has no fence or one not
 * newer (an item that does not exist yet is created, as UpdateItem does). Throws StaleFenceError when it has a
 * newer one.
 */
export async function fencedUpdate(
  doc: DynamoDBDocumentClient,
  input: UpdateCommandInput & FenceInput,
): Promise<UpdateCommandOutput> {
  const { fence: _f, fenceAttribute: _a, ...update } = input;
  check(
    typeof update.UpdateExpression === 'string' && update.UpdateExpression.trim() !== ''
      ? []
      : ['UpdateExpression must be a non-empty string'],
    'fencedUpdate',
  );
  const { attribute, ...expressions } = fenced('fencedUpdate', input);
  const expr = update.UpdateExpression as string;
  // Update expressions have at most one SET clause: the fence joins it, or starts one.
  const set = /(^|\s)SET\s/i.exec(expr);
  const UpdateExpression = set
    ? `${expr.slice(0, set.index + set[0].length)}${NAME} = ${VALUE}, ${expr.slice(set.index + set[0].length)}`
    : `SET ${NAME} = ${VALUE} ${expr}`;
  const command = new UpdateCommand({
    ...update,
    ...expressions,
    UpdateExpression,
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
  });
  const resource = `${update.TableName ?? ''} ${JSON.stringify(update.Key ?? {})}`;
  const readFence = async () => {
    const got = await doc.send(
      new GetCommand({
        TableName: update.TableName,
        Key: update.Key,
        ConsistentRead: true,
        ProjectionExpression: NAME,
        ExpressionAttributeNames: { [NAME]: attribute },
      }),
    );
    const v = got.Item?.[attribute];
    return v === undefined ? undefined : Number(v);
  };
  return refusing(
    doc.send(command),
    { resource, fence: input.fence, attribute, ownCondition: Boolean(update.ConditionExpression) },
    readFence,
  );
}

/**
 * The write's reply, or StaleFenceError when its condition failed because the item holds a newer fence. The
 * item DynamoDB returns with the failure (ReturnValuesOnConditionCheckFailure) tells; where none comes back
 * (emulators such as dynalite), an update with a condition of the caller's own reads the item's fence
 * (strongly consistent), and otherwise the fence was the only condition. A failure that is not the fence's is
 * rethrown as it is.
 */
async function refusing<T>(
  write: Promise<T>,
  at: { resource: string; fence: number; attribute: string; ownCondition: boolean },
  readFence?: () => Promise<number | undefined>,
): Promise<T> {
  try {
    return await write;
  } catch (err) {
    if ((err as Error)?.name !== 'ConditionalCheckFailedException') throw err;
    const item = (err as ConditionalCheckFailedException).Item;
    const stored = item?.[at.attribute]?.N;
    let current = stored === undefined ? undefined : Number(stored);
    if (item === undefined && at.ownCondition && readFence) current = await readFence();
    const stale = current !== undefined ? current > at.fence : item === undefined && !at.ownCondition;
    if (stale) throw staleFence(at.resource, at.fence, current);
    throw err;
  }
}
