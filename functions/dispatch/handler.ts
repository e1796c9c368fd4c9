/**
 * dispatch: `POST /dispatch` with `{ "items": [{ "id": "…", … }, …] }` fans the batch out as one asynchronous
 * invocation of `worker` per item (`InvocationType: 'Event'`).
 *
 * At least once, on purpose: the SDK retries an Invoke that timed out or was throttled, and an Invoke whose
 * reply was lost may already have been queued, so an item can reach the worker twice; a caller that gets an
 * error retries the whole batch, and items repeated in a batch are sent as they come. None of that needs care
 * here because the worker runs each item id once (withOnce). That is the point: the sender stays simple.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { WorkItem } from '../shared/work-item.js';

export type { WorkItem } from '../shared/work-item.js';

export const MAX_ITEMS = 1000;
const MAX_ID_LENGTH = 200;
/** Invokes in flight at once. */
const CONCURRENCY = 16;

// Module scope: one client per container, reused by warm invocations.
const lambda = new LambdaClient({
  maxAttempts: 3,
  // A hung Invoke is abandoned and retried (the item may then be queued twice: the worker dedupes).
  requestHandler: { requestTimeout: 5_000, connectionTimeout: 2_000 },
});
const workerFunctionName = process.env.WORKER_FUNCTION_NAME ?? 'oncely-local-worker';

const json = (statusCode: number, body: unknown): APIGatewayProxyStructuredResultV2 => ({
  statusCode,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

/** The items of a request body, or the problem with it. */
export function parseItems(body: string | undefined): { items: WorkItem[] } | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body ?? '');
  } catch {
    return { problem: 'body must be JSON: {"items": [{"id": "..."}]}' };
  }
  const items = (parsed as { items?: unknown } | null)?.items;
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_ITEMS) {
    return { problem: `items must be an array of 1 to ${MAX_ITEMS} work items` };
  }
  const bad = items.findIndex(
    (item: unknown) =>
      typeof item !== 'object' ||
      item === null ||
      typeof (item as WorkItem).id !== 'string' ||
      (item as WorkItem).id.length === 0 ||
      (item as WorkItem).id.length > MAX_ID_LENGTH,
  );
  if (bad !== -1) return { problem: `items[${bad}].id must be a string of 1 to ${MAX_ID_LENGTH} characters` };
  return { items: items as WorkItem[] };
}

export const handler = async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> => {
  const body = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : event.body;
  const parsed = parseItems(body);
  if ('problem' in parsed) return json(400, { error: parsed.problem });

  const failed: { id: string; error: string }[] = [];
  const queue = [...parsed.items];
  const send = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
      try {
        await lambda.send(
          new InvokeCommand({
            FunctionName: workerFunctionName,
            InvocationType: 'Event',
            Payload: JSON.stringify(item),
          }),
        );
      } catch (err) {
        failed.push({ id: item.id, error: err instanceof Error ? err.name : 'Error' });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, send));

  const dispatched = parsed.items.length - failed.length;
  // Some invokes failed: 502 with the ids. Retrying the whole batch is safe, the worker dedupes.
  return failed.length > 0 ? json(502, { dispatched, failed }) : json(202, { dispatched });
};
