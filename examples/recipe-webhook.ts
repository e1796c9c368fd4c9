import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { fromEnv, withOnce } from 'oncely';

const store = fromEnv();

// GitHub resends a delivery it got no answer for: the X-GitHub-Delivery header is the key ('github'; also
// 'stripe' and 'standard-webhooks'). Verify the signature first (functions/webhook does), then run once.
export const handler = withOnce<APIGatewayProxyEventV2, APIGatewayProxyResultV2>(
  async (event, _context, { key, fence }) => {
    const delivery = JSON.parse(event.body ?? '{}') as { action?: string };
    return { statusCode: 200, body: JSON.stringify({ delivery: key, action: delivery.action, fence }) };
  },
  // A duplicate while the first runs gets 409 with Retry-After; after it, the first response again.
  { store, key: 'github', ttlMs: 10_000 },
);
