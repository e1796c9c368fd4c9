import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context, SQSEvent } from 'aws-lambda';
import { fromEnv, withOnce } from 'oncely';

const store = fromEnv();
const logger = new Logger({ serviceName: 'payments' });
const metrics = new Metrics({ namespace: 'payments', serviceName: 'payments' });

// Decisions (claimed, duplicate-returned, lost, ...) go through the function's own Logger, with its context
// (request id, cold start, service); oncely's metrics are added to its Metrics and published with them.
const charge = withOnce(
  async (event: SQSEvent, _context, { fence }) => ({ fence, n: event.Records.length }),
  {
    store,
    logger,
    metrics,
  },
);

export async function handler(event: SQSEvent, context: Context) {
  logger.addContext(context);
  try {
    return await charge(event, context);
  } finally {
    metrics.publishStoredMetrics();
  }
}

// Without Powertools: `metrics: 'emf'` (or ONCELY_METRICS=emf) writes one CloudWatch EMF document per
// invocation on stdout, and the default log lines carry function_request_id, cold_start and xray_trace_id.
export const plain = withOnce(async (event: SQSEvent) => event.Records.length, { store, metrics: 'emf' });
