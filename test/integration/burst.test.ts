/**
 * A burst on every transport (issue 21): PROCESSES processes (test/support/burst-worker.ts) each fire CALLS
 * concurrent withOnce deliveries over the same KEYS message ids, at once, against real servers. A delivery
 * that gets InProgressError (another delivery of its id is running) is delivered again later, as SQS would.
 * Every delivery must get its result, no call may fail with a store error (a timeout included), and each id's
 * handler must run exactly once, every delivery of an id getting the same result; over REST the gateway sees
 * at most maxConnections sockets per process open at a time. Outcomes only: how long the burst takes is
 * printed, not asserted.
 *
 * Over REST at 797e7ea (a socket per request in flight, no bound) the burst opened thousands of sockets and
 * timed out thousands of calls on a busy machine; upstashStore's maxConnections bounds and coalesces them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_CONNECTIONS } from '../../layers/oncely/src/transport/upstash.js';
import { runBurst } from '../support/burst.js';
import type { BurstSpec } from '../support/burst-worker.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

const PROCESSES = 4;
const CALLS = 1000;
const KEYS = 200;
/** Deliveries stop being retried after this long: a burst that fails reports its figures in time. */
const BUDGET_MS = 30_000;
/**
 * The stores' timeoutMs: it catches a call that hangs, it does not time the burst. On two cores with CPU
 * burners beside (npm run test:stress) the whole burst takes up to about 5 s of wall time, so the default 2 s
 * would time the machine, not the transport.
 */
const TIMEOUT_MS = 10_000;

describe.each(TRANSPORTS)('a burst of %s', (name) => {
  let fixture: TransportFixture;
  beforeAll(async () => {
    fixture = await startTransport(name);
  });
  afterAll(async () => {
    await fixture?.stop();
  });

  const storeSpec = (): BurstSpec['store'] => {
    if (name === 'rest') return { kind: 'rest', url: fixture.gateway!.url, token: fixture.gateway!.token };
    const nodes = fixture.servers.map((s) => ({ host: s.host, port: s.port }));
    return name === 'redis' ? { kind: 'redis', ...nodes[0]! } : { kind: 'cluster', nodes };
  };

  it(`answers ${PROCESSES} processes × ${CALLS} concurrent withOnce calls, each key run once`, async () => {
    const socketsBefore = fixture.gateway?.connections ?? 0;
    const out = await runBurst(
      {
        store: storeSpec(),
        calls: CALLS,
        keys: KEYS,
        namespace: `burst-${name}-${process.pid}`,
        handlerMs: 20,
        tries: 40,
        retryMs: 100,
        budgetMs: BUDGET_MS,
        timeoutMs: TIMEOUT_MS,
      },
      PROCESSES,
    );
    const sockets = name === 'rest' ? fixture.gateway!.connections - socketsBefore : 0;
    const peak = fixture.gateway?.peakConnections ?? 0;
    console.log(
      `${name}: ${out.answered}/${out.calls} answered in ${Math.round(out.wallMs)} ms, ` +
        `${out.runs.size} keys run (${[...out.runs.values()].filter((n) => n > 1).length} more than once), ` +
        `${name === 'rest' ? `${sockets} sockets at the gateway, at most ${peak} at once, ` : ''}` +
        `errors ${JSON.stringify(out.errors)}`,
    );
    // A burst never turns into thousands of sockets: each process keeps to its maxConnections at a time.
    expect(peak).toBeLessThanOrEqual(PROCESSES * DEFAULT_MAX_CONNECTIONS);
    const storeFailures = Object.entries(out.errors).filter(([what]) => !what.startsWith('InProgressError'));
    expect(storeFailures).toEqual([]);
    expect(out.storeErrors).toBe(0);
    expect(out.answered).toBe(PROCESSES * CALLS);
    const notOnce = Array.from({ length: KEYS }, (_, i) => `m-${i}`).filter((id) => out.runs.get(id) !== 1);
    expect(notOnce).toEqual([]);
    expect(out.disagreeing).toEqual([]);
    expect(out.mismatched).toBe(0);
  }, 90_000);
});
